"""Model bundles (DESIGN section 4): a folder with ``manifest.json`` and the model files it lists.

The manifest is validated on load, every file is checked against its sha256 before any runtime sees it, and
file paths may not leave the bundle folder. The same schema serves detector and embedding bundles::

    {
      "format": "crres-bundle/1",
      "name": "mtcnn", "version": "...", "task": "face-detection" | "face-embedding" | "resolution-estimation",
      "input": {"size": [112, 112] | null, "color": "rgb" | "bgr", "mean": [3 floats], "std": [3 floats]},
      "files": {"onnx": {"pnet": {"path": "pnet.onnx", "sha256": "..."}, ...}, "openvino": {...}, ...},
      ... task-specific keys (embedding_dim, thresholds, calibration, parity, source, licence) ...
    }

Thresholds (``"thresholds"``: ``resolutions`` and ``far: {rate: [one per resolution]}``, optionally per model file
in ``by_file``) are checked, not trusted: resolutions positive and strictly increasing, every false-accept rate a
number in (0, 1), every threshold a cosine in (0, 1] (a threshold at or below 0 would accept about half of all
impostor pairs, which no calibration at a false-accept rate below 0.5 gives), and at each resolution a stricter
rate never has a lower threshold. ``tar`` values, when present, lie in [0, 1]. Bundles may add (export/thresholds.py)
a fitted impostor ``tail`` per table and a 1:N ``identification`` table (same schema, gallery templates degraded
to the probe's resolution); both are checked the same way, and bundles without them (only ``far`` 1e-3/1e-4)
still load.

Signatures: ``export/signing.py`` signs a bundle with Ed25519 at export (``manifest.sig`` beside the manifest;
the manifest holds every file's sha256, so it covers the files). A deployment pins the exporter's public key with
``load_bundle(..., public_key=...)`` (``Recognizer(public_key=...)``) or, for every bundle the process loads, the
environment variable ``CRRES_BUNDLE_PUBLIC_KEY`` (64 hex characters, or a file holding them); a pinned key makes
unsigned bundles, bundles signed by any other key (re-signed) and bundles altered after signing fail to load.
Needs ``cryptography`` (``pip install 'crres[crypto]'``) only when a key is pinned.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from crres_sdk.errors import BundleError
from crres_sdk.preprocess import Normalization

FORMAT = "crres-bundle/1"
TASKS = ("face-detection", "face-embedding", "resolution-estimation")
SIGNATURE_FILE = "manifest.sig"
SIGNATURE_FORMAT = "crres-bundle-signature/1"
#: Environment variable that pins the bundle signing public key for every bundle the process loads.
PUBLIC_KEY_ENV = "CRRES_BUNDLE_PUBLIC_KEY"


def signed_payload(manifest_bytes: bytes) -> bytes:
    """What is signed: the manifest file's exact bytes behind a domain-separation prefix."""
    return SIGNATURE_FORMAT.encode() + b"\n" + manifest_bytes


def parse_public_key(value: str | bytes | os.PathLike) -> bytes:
    """A 32-byte Ed25519 public key from raw bytes, 64 hex characters, or a file holding the hex."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return bytes(value)
    text = value.decode("ascii", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    candidate = text.strip()
    if len(candidate) != 64 and Path(candidate).expanduser().is_file():
        candidate = Path(candidate).expanduser().read_text().strip()
    try:
        raw = bytes.fromhex(candidate)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise BundleError(f"a bundle public key must be 32 bytes as 64 hex characters (or a file holding them), "
                          f"got {text[:80]!r}")
    return raw


def _verify_signature(root: Path, manifest_bytes: bytes, public_key: bytes) -> None:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:
        raise BundleError("verifying bundle signatures needs the 'cryptography' package: pip install 'crres[crypto]'") \
            from exc
    sig_path = root / SIGNATURE_FILE
    if not sig_path.is_file():
        raise BundleError(f"bundle {root} is not signed ({SIGNATURE_FILE} missing), but a bundle public key is pinned: "
                          "refusing it")
    try:
        sig = json.loads(sig_path.read_text())
        signature = bytes.fromhex(sig["signature"])
        signer = bytes.fromhex(sig.get("public_key", ""))
        if sig.get("format") != SIGNATURE_FORMAT or sig.get("algorithm") != "ed25519" or len(signature) != 64:
            raise ValueError("not an Ed25519 bundle signature")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{sig_path} is not a valid bundle signature: {exc}") from None
    if signer and signer != public_key:
        raise BundleError(f"bundle {root} is signed by key {signer.hex()[:16]}..., not the pinned key "
                          f"{public_key.hex()[:16]}... (re-signed by someone else): refusing it")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed_payload(manifest_bytes))
    except InvalidSignature:
        raise BundleError(f"bundle {root}: its signature does not verify with the pinned key (the manifest was "
                          "altered after signing, or re-signed): refusing it") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    root: Path
    manifest: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def normalization(self) -> Normalization:
        spec = self.manifest["input"]
        return Normalization(color=spec["color"], mean=tuple(spec["mean"]), std=tuple(spec["std"]))

    def targets(self) -> list[str]:
        return list(self.manifest["files"])

    def file(self, target: str, role: str) -> Path:
        """Absolute path of a verified file, e.g. ``bundle.file("onnx", "pnet")``."""
        files = self.manifest["files"]
        if target not in files:
            raise BundleError(f"bundle {self.root} has no {target!r} files (has: {', '.join(files)})")
        if role not in files[target]:
            raise BundleError(f"bundle {self.root} has no {target!r} file for {role!r}")
        return self.root / files[target][role]["path"]


def load_bundle(root: str | Path, *, task: str | None = None, verify: bool = True,
                public_key: str | bytes | os.PathLike | None = None) -> ModelBundle:
    """Read and validate ``root/manifest.json``; with ``verify`` check every listed file's sha256. With a pinned
    ``public_key`` (or ``$CRRES_BUNDLE_PUBLIC_KEY``) the bundle must carry a valid signature by that key."""
    root = Path(root).expanduser().resolve()
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a model bundle: {manifest_path} is missing")
    try:
        raw = manifest_path.read_bytes()  # verified and parsed from the same bytes
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if public_key is None and os.environ.get(PUBLIC_KEY_ENV):
        public_key = os.environ[PUBLIC_KEY_ENV]
    if public_key is not None:
        _verify_signature(root, raw, parse_public_key(public_key))
    _validate(manifest, manifest_path)
    if task is not None and manifest["task"] != task:
        raise BundleError(f"{root} holds a {manifest['task']!r} model, expected {task!r}")
    for target, roles in manifest["files"].items():
        for role, entry in roles.items():
            path = (root / entry["path"]).resolve()
            if not path.is_relative_to(root):
                raise BundleError(f"{manifest_path}: files.{target}.{role} path {entry['path']!r} leaves the bundle")
            if not path.is_file():
                raise BundleError(f"{manifest_path}: files.{target}.{role} = {entry['path']!r} is missing")
            if verify and sha256_file(path) != entry["sha256"]:
                raise BundleError(f"{path} does not match its sha256 in {manifest_path}: corrupt or replaced")
    return ModelBundle(root, manifest)


def _validate(m: Any, where: Path) -> None:
    def fail(msg: str) -> None:
        raise BundleError(f"{where}: {msg}")

    if not isinstance(m, dict):
        fail("manifest must be a JSON object")
    if m.get("format") != FORMAT:
        fail(f"format must be {FORMAT!r}, got {m.get('format')!r}")
    for key in ("name", "version", "task"):
        if not isinstance(m.get(key), str) or not m[key]:
            fail(f"{key} must be a non-empty string")
    if m["task"] not in TASKS:
        fail(f"task must be one of {TASKS}, got {m['task']!r}")
    spec = m.get("input")
    if not isinstance(spec, dict):
        fail("input must be an object")
    if spec.get("color") not in ("rgb", "bgr"):
        fail("input.color must be 'rgb' or 'bgr'")
    for key in ("mean", "std"):
        values = spec.get(key)
        if not (isinstance(values, list) and len(values) == 3 and all(isinstance(v, (int, float)) for v in values)):
            fail(f"input.{key} must be a list of 3 numbers")
    size = spec.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        fail("input.size must be null (dynamic) or [height, width]")
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        fail("files must be a non-empty object of target -> role -> {path, sha256}")
    for target, roles in files.items():
        if not isinstance(roles, dict) or not roles:
            fail(f"files.{target} must be a non-empty object")
        for role, entry in roles.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
                fail(f"files.{target}.{role} must be {{path: str, sha256: 64 hex chars}}")
    if m.get("thresholds") is not None:
        _validate_thresholds(m["thresholds"], fail)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate_thresholds(spec: Any, fail) -> None:
    if not isinstance(spec, dict):
        fail("thresholds must be an object")
    if spec.get("metric", "cosine") != "cosine":
        fail(f"thresholds.metric must be 'cosine', got {spec.get('metric')!r}")
    res = spec.get("resolutions")
    if not (isinstance(res, list) and res and all(_number(r) and r >= 1 for r in res)):
        fail("thresholds.resolutions must be a non-empty list of finite numbers >= 1 (px)")
    if any(b <= a for a, b in zip(res, res[1:])):
        fail(f"thresholds.resolutions must be strictly increasing, got {res}")
    tables = {"thresholds": spec}
    by_file = spec.get("by_file", {})
    if not isinstance(by_file, dict):
        fail("thresholds.by_file must be an object of model file -> {far: ...}")
    tables.update({f"thresholds.by_file.{k}": v for k, v in by_file.items()})
    for where, table in list(tables.items()):  # optional 1:N (resolution-matched) tables, checked alike
        if isinstance(table, dict) and table.get("identification") is not None:
            tables[f"{where}.identification"] = table["identification"]
    for where, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("far"), dict) or not table["far"]:
            fail(f"{where}.far must be a non-empty object of false-accept rate -> thresholds")
        rates = []
        for rate, values in table["far"].items():
            try:
                r = float(rate)
            except ValueError:
                r = math.nan
            if not 0.0 < r < 1.0:
                fail(f"{where}.far key {rate!r} must be a false-accept rate in (0, 1)")
            if not (isinstance(values, list) and len(values) == len(res)):
                fail(f"{where}.far[{rate!r}] must hold one threshold per resolution ({len(res)})")
            for px, v in zip(res, values):
                if not (_number(v) and 0.0 < v <= 1.0):
                    fail(f"{where}.far[{rate!r}] at {px} px is {v!r}: a cosine threshold must lie in (0, 1] (at or "
                         "below 0 about half of all impostor pairs would match)")
            rates.append((r, rate, values))
        rates.sort()
        for (r1, k1, v1), (r2, k2, v2) in zip(rates, rates[1:]):  # r1 < r2: r1 is the stricter rate
            for px, a, b in zip(res, v1, v2):
                if a < b - 1e-9:
                    fail(f"{where}: the threshold at FAR {k1} ({a}) is below the one at the looser FAR {k2} ({b}) at "
                         f"{px} px; a stricter false-accept rate needs a threshold at least as high")
        for rate, values in (table.get("tar") or {}).items():
            if not (isinstance(values, list) and all(_number(v) and 0.0 <= v <= 1.0 for v in values)):
                fail(f"{where}.tar[{rate!r}] must be a list of rates in [0, 1]")
        if table.get("tail") is not None:
            _validate_tail(table["tail"], f"{where}.tail", res, table["far"], fail)


def _validate_tail(tail: Any, where: str, res: list, far: dict, fail) -> None:
    """The fitted impostor tail P(s > t) = p_u exp(-(t - u) / scale): one entry per resolution, u a cosine in
    [-1, 1], p_u a rate in (0, 1], scale > 0; ``fitted`` (optional) one flag per resolution for listed rates."""
    if not isinstance(tail, dict):
        fail(f"{where} must be an object")
    if tail.get("model") != "exponential":
        fail(f"{where}.model must be 'exponential', got {tail.get('model')!r}")
    checks = {"u": lambda v: -1.0 <= v <= 1.0, "p_u": lambda v: 0.0 < v <= 1.0, "scale": lambda v: 0.0 < v <= 2.0}
    for key, ok in checks.items():
        values = tail.get(key)
        if not (isinstance(values, list) and len(values) == len(res) and all(_number(v) and ok(v) for v in values)):
            fail(f"{where}.{key} must hold one finite value per resolution ({len(res)}) in its range "
                 "(u in [-1, 1], p_u in (0, 1], scale in (0, 2])")
    fitted = tail.get("fitted", {})
    if not isinstance(fitted, dict):
        fail(f"{where}.fitted must be an object of false-accept rate -> one flag per resolution")
    for rate, flags in fitted.items():
        if rate not in far or not (isinstance(flags, list) and len(flags) == len(res)
                                   and all(isinstance(v, bool) for v in flags)):
            fail(f"{where}.fitted[{rate!r}] must be one true/false per resolution for a listed false-accept rate")


# ------------------------------------------------------------------------------------------------ discovery
# One place finds bundles, in this order: an explicit path, the bundle's own environment variable, then the folders
# of $CRRES_MODELS, the models installed with the package, the repository checkout (editable installs) and the user
# cache. Every folder holds one sub-folder per bundle; the first with a manifest.json wins (load_bundle then checks it).

#: Folders of bundle folders searched before the installed ones (os.pathsep-separated, like PATH).
MODELS_ENV = "CRRES_MODELS"
#: Bundles installed with the package: the wheel ships the default embedder and resolution estimator here.
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
_REPO_ROOT = Path(__file__).resolve().parents[2]
#: Bundles of a source checkout (<repo>/models), searched only when this file is the checkout's own.
REPO_MODELS = _REPO_ROOT / "models"

#: The default set a Recognizer needs (bundle name -> task); crres models list checks it.
DEFAULT_BUNDLES = {"crres_default": "face-embedding", "mtcnn": "face-detection",
                   "resolution_estimator": "resolution-estimation"}
#: Bundles the wheel carries as package data (the others are fetched or built, see fix_command).
PACKAGED_BUNDLES = ("crres_default", "resolution_estimator")


def in_checkout() -> bool:
    """True when crres_sdk runs from a source checkout (editable install, or sdk/ on sys.path)."""
    return (_REPO_ROOT / "pyproject.toml").is_file() and (_REPO_ROOT / "sdk" / "crres_sdk" / "bundle.py").is_file()


def user_models_dir() -> Path:
    """The per-user bundle cache: $XDG_CACHE_HOME/crres/models, else ~/.cache/crres/models."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "crres" / "models"


@dataclass(frozen=True)
class ModelSource:
    """A folder of bundle folders and where it comes from (shown by ``crres models list``)."""

    origin: str  # "$CRRES_MODELS", "package", "checkout" or "user cache"
    root: Path


def model_sources() -> list[ModelSource]:
    """The folders searched for bundles by name, in order."""
    sources = [ModelSource(f"${MODELS_ENV}", Path(p).expanduser())
               for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    sources.append(ModelSource("package", PACKAGE_MODELS))
    if in_checkout():
        sources.append(ModelSource("checkout", REPO_MODELS))
    sources.append(ModelSource("user cache", user_models_dir()))
    return sources


def fix_command(name: str) -> str:
    """The command that provides a missing default bundle on this install."""
    if name == "mtcnn":
        return "make setup" if in_checkout() else "crres models fetch"
    if name in PACKAGED_BUNDLES:
        return "git checkout -- models/" + name if in_checkout() else "pip install --force-reinstall --no-deps crres"
    return f"put the {name} bundle folder in {user_models_dir()}, or point ${MODELS_ENV} at its parent folder"


def locate_bundle(name: str) -> tuple[Path, str] | None:
    """The first folder named ``name`` holding a manifest.json in :func:`model_sources`, with its origin."""
    for source in model_sources():
        if (source.root / name / "manifest.json").is_file():
            return source.root / name, source.origin
    return None


def find_bundle(name: str, env_var: str, path: str | Path | None, how_to_build: str) -> Path:
    """A bundle folder: ``path``, else $env_var, else the first of :func:`model_sources` that has ``name``.

    ``how_to_build`` (a command from the source tree) is shown only where that tree is present; an installed
    package says the command that fixes it there (:func:`fix_command`)."""
    hint = f"Fix: {fix_command(name)}." if name in DEFAULT_BUNDLES or not in_checkout() else how_to_build
    if path is not None or os.environ.get(env_var):
        candidate = Path(path if path is not None else os.environ[env_var]).expanduser()
        if (candidate / "manifest.json").is_file():
            return candidate
        origin = "the path given" if path is not None else f"${env_var}"
        raise BundleError(f"{name} bundle not found: {candidate} (from {origin}) has no manifest.json. {hint}")
    found = locate_bundle(name)
    if found is not None:
        return found[0]
    looked = ", ".join(f"{s.root / name} ({s.origin})" for s in model_sources())
    raise BundleError(f"{name} bundle not found (looked in: {looked}). {hint} Or point ${env_var} at a bundle folder, "
                      f"or ${MODELS_ENV} at a folder of bundles; `crres models list` shows what is installed.")
