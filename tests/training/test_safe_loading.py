"""Every loader of a file that may come from outside refuses a pickle payload before it runs (issue 19, item 1).

Each test plants a file whose unpickling would create a marker file (``Path.touch`` via ``__reduce__``), hands it
to one loader, and checks both that the loader refuses it and that the marker does not exist. One test proves the
payload is live (an unsafe load does write the marker), so the others cannot pass for a broken payload. A static
scan keeps new unsafe loads out of the code base.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _evil_torch(path: Path, marker: Path, **extra) -> Path:
    torch.save({**extra, "x": _Payload(marker)}, path)
    return path


def _evil_npz(path: Path, marker: Path, key: str) -> Path:
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    np.savez(path, **{key: arr})  # object arrays are stored pickled
    return path


def test_payload_is_live(tmp_path):
    marker = tmp_path / "pwned"
    torch.load(_evil_torch(tmp_path / "e.pt", marker), weights_only=False)
    assert marker.exists()
    marker.unlink()
    with np.load(_evil_npz(tmp_path / "e.npz", marker, "crops"), allow_pickle=True) as z:
        z["crops"]
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_sr_resume_refuses_payload(tmp_path):
    from training import sr

    marker = tmp_path / "pwned"
    evil = _evil_torch(tmp_path / "checkpoint.pt", marker, model={}, model_config={}, optimizer={}, scheduler={},
                       generator=torch.zeros(1), step=0, epoch=0)
    with pytest.raises(SystemExit, match="refusing to load"):
        sr.load_resume_checkpoint(evil)
    assert not marker.exists()
    # The command line path goes through the same loader, before any training.
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    import cv2

    for i in range(3):
        cv2.imwrite(str(data / f"{i}.png"), np.full((112, 112, 3), 40 * i, np.uint8))
    with pytest.raises(SystemExit, match="refusing to load"):
        sr.main(["--data", str(tmp_path / "data"), "--scale", "4", "--out", str(tmp_path / "run"), "--config", "small",
                 "--steps", "1", "--batch-size", "1", "--val", "1", "--workers", "0", "--no-progress",
                 "--resume", str(evil)])
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(SystemExit, match="refusing to load"):
        sr.load_resume_checkpoint(raw)
    assert not marker.exists()
    with pytest.raises(SystemExit, match="not an sr-edsr checkpoint"):
        torch.save({"step": 1}, tmp_path / "other.pt")
        sr.load_resume_checkpoint(tmp_path / "other.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_training_checkpoint_refuses_payload(tmp_path):
    from training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    marker = tmp_path / "pwned"
    evil = _evil_torch(tmp_path / "e.pt", marker, format=CHECKPOINT_FORMAT, format_version=1)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_embedder_refuses_payload(tmp_path):
    from evaluation.embedder import load_checkpoint_embedder

    marker = tmp_path / "pwned"
    evil = _evil_torch(tmp_path / "e.pt", marker, model_name="mobilefacenet", state_dict={})
    with pytest.raises(ValueError, match="not a weights-only torch checkpoint"):
        load_checkpoint_embedder(evil)
    assert not marker.exists()


def test_insightface_bin_refuses_payload(tmp_path):
    from evaluation.datasets import read_bin

    marker = tmp_path / "pwned"
    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [_Payload(marker)]), protocol=2))
    with pytest.raises(ValueError, match="not a safe InsightFace .bin"):
        read_bin(evil)
    assert not marker.exists()


def test_lfw_crop_cache_refuses_payload(tmp_path, monkeypatch):
    from evaluation import datasets

    root = tmp_path / "lfw"
    for rel in ("A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg"):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / rel).write_bytes(b"not read: the cache answers first")
    (root / "pairs.txt").write_text("1 1\nA 1 2\nA 1 B 1\n")
    monkeypatch.setattr(datasets, "aligned_cache_key", lambda *a, **k: "k")
    monkeypatch.setattr(datasets, "_detector_id", lambda d: "test")
    marker = tmp_path / "pwned"
    cache = tmp_path / "cache"
    cache.mkdir()
    _evil_npz(cache / "lfw_aligned_k.npz", marker, "crops")
    with pytest.raises(ValueError, match="allow_pickle"):
        datasets.load_lfw(root, cache_dir=cache, progress=False)
    assert not marker.exists()


def test_mitm_eval_crop_cache_refuses_payload(tmp_path, monkeypatch):
    from evaluation import datasets
    from training.experiments import mitm_eval

    monkeypatch.setattr(datasets, "aligned_cache_key", lambda *a, **k: "k")
    monkeypatch.setattr(datasets, "_detector_id", lambda d: "test")
    marker = tmp_path / "pwned"
    _evil_npz(tmp_path / "lfw_subset_aligned_k.npz", marker, "crops")
    with pytest.raises(ValueError, match="allow_pickle"):
        mitm_eval.aligned_crops(tmp_path, ["A/A_0001.jpg"], tmp_path, progress=False)
    assert not marker.exists()


def test_export_embedding_cache_refuses_payload(tmp_path):
    from export.lfw_parity import load_store

    class Cache:
        _store: dict = {}

    marker = tmp_path / "pwned"
    _evil_npz(tmp_path / "store.npz", marker, "i0")
    assert load_store(Cache(), tmp_path / "store.npz") == 0  # unreadable cache: ignored and recomputed
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_detector_weights_refuse_payload(tmp_path):
    from crres_sdk.mtcnn_convert import read_wheel_weights

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"x": _Payload(marker)}, buf)
    wheel = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ("pnet", "rnet", "onet"):
            zf.writestr(f"facenet_pytorch/data/{name}.pt", buf.getvalue())
    with pytest.raises(pickle.UnpicklingError):
        read_wheel_weights(wheel)
    assert not marker.exists()


_UNSAFE_TEXT = [
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(?:joblib|dill|cloudpickle)\.load"), "a pickle-based loader"),
]


def _unsafe_torch_loads(tree: ast.AST) -> list[int]:
    """Lines of ``torch.load(...)`` calls without a literal ``weights_only=True``."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                lines.append(node.lineno)
    return lines


def test_no_unsafe_loader_in_the_code_base():
    """No product code (SDK, training, export, benchmarks, examples) unpickles a file unsafely."""
    found = []
    for folder in ("sdk", "training", "export", "benchmarks", "examples"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(REPO)
            found += [f"{rel}:{line}: torch.load without weights_only=True"
                      for line in _unsafe_torch_loads(ast.parse(text))]
            for pattern, what in _UNSAFE_TEXT:
                for m in pattern.finditer(text):
                    found.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
    assert not found, "unsafe loads:\n" + "\n".join(found)


def test_the_scan_sees_an_unsafe_load():
    """The scan itself is live: it flags the forms it is meant to catch and passes the safe one."""
    bad = "import torch\ntorch.load(open(p), map_location='cpu')\ntorch.load(p, weights_only=False)\n"
    assert _unsafe_torch_loads(ast.parse(bad)) == [2, 3]
    assert _unsafe_torch_loads(ast.parse("torch.load(str(p), map_location='cpu', weights_only=True)")) == []
    assert _UNSAFE_TEXT[0][0].search("np.load(f, allow_pickle=True)")
