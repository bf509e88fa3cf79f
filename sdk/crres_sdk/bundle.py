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
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from crres_sdk.errors import BundleError
from crres_sdk.preprocess import Normalization

FORMAT = "crres-bundle/1"
TASKS = ("face-detection", "face-embedding", "resolution-estimation")


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


def load_bundle(root: str | Path, *, task: str | None = None, verify: bool = True) -> ModelBundle:
    """Read and validate ``root/manifest.json``; with ``verify`` check every listed file's sha256."""
    root = Path(root).expanduser().resolve()
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a model bundle: {manifest_path} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
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


#: Bundles the repository builds or ships live in <repo>/models/<name> (editable installs and checkouts).
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
USER_MODELS = Path.home() / ".cache" / "crres" / "models"


def find_bundle(name: str, env_var: str, path: str | Path | None, how_to_build: str) -> Path:
    """A bundle folder: ``path``, else $env_var, else <repo>/models/name, else ~/.cache/crres/models/name."""
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get(env_var):
        candidates = [Path(os.environ[env_var])]
    else:
        candidates = [REPO_MODELS / name, USER_MODELS / name]
    for candidate in candidates:
        if (candidate / "manifest.json").is_file():
            return candidate
    raise BundleError(f"{name} bundle not found (looked in: {', '.join(str(c) for c in candidates)}). "
                      f"{how_to_build} Or point ${env_var} at an existing bundle.")
