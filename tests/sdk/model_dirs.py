"""Fake model bundles and an isolated model search path for the discovery and ``crres models`` tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crres_sdk import bundle as bundle_module
from crres_sdk.bundle import DEFAULT_BUNDLES


def write_bundle(folder: Path, task: str, name: str | None = None, payload: bytes = b"not a real model") -> Path:
    """A bundle that passes load_bundle's schema and hash checks (its file is no model: nothing here runs it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(payload)
    manifest = {"format": "crres-bundle/1", "name": name or folder.name, "version": "test", "task": task,
                "input": {"size": [112, 112], "color": "rgb", "mean": [127.5] * 3, "std": [128.0] * 3},
                "files": {"onnx": {"model": {"path": "model.onnx", "sha256": hashlib.sha256(payload).hexdigest()}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def search_path(tmp_path, monkeypatch):
    """Empty $CRRES_MODELS, package, checkout and user-cache folders in tmp_path; returns {origin: folder}."""
    roots = {name: tmp_path / name for name in ("env", "package", "checkout")}
    roots["cache"] = tmp_path / "xdg" / "crres" / "models"
    for root in roots.values():
        root.mkdir(parents=True)
    monkeypatch.setenv(bundle_module.MODELS_ENV, str(roots["env"]))
    monkeypatch.setattr(bundle_module, "PACKAGE_MODELS", roots["package"])
    monkeypatch.setattr(bundle_module, "REPO_MODELS", roots["checkout"])
    monkeypatch.setattr(bundle_module, "in_checkout", lambda: True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("CRRES_MODEL_BUNDLE", "CRRES_DETECTOR_BUNDLE", "CRRES_ESTIMATOR_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    return roots


def write_default_set(root: Path, skip: tuple[str, ...] = ()) -> None:
    for name, task in DEFAULT_BUNDLES.items():
        if name not in skip:
            write_bundle(root / name, task)
