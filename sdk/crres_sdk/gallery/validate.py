"""Checks on what callers hand a gallery and on what it reads back: identity names (NFC, printable, no bidi or
zero-width tricks), resolutions, source hashes, metadata, thumbnails, and whether stored template bytes are a
finite unit vector of the model's dimension."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Tolerance on the L2 norm of enrolled templates.
NORM_TOLERANCE = 1e-3
_MAX_NAME = 256


#: Unicode categories refused in names: controls, format characters (bidi overrides and isolates, zero-width
#: spaces and joiners, BOM, soft hyphen), surrogates, private use, unassigned, line/paragraph separators. Any
#: of them can make a name display as another ("\u202eecila" shows as "alice") or hide characters.
_REFUSED_CATEGORIES = {"Cc": "control", "Cf": "invisible format (bidi/zero-width)", "Cs": "surrogate",
                       "Co": "private-use", "Cn": "unassigned", "Zl": "line separator", "Zp": "paragraph separator"}


def _check_name(name: Any) -> str:
    """The name NFC-normalised (so composed and decomposed spellings are one identity), or a clear error."""
    if not isinstance(name, str):
        raise TypeError(f"identity name must be a string, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    if not name.strip() or name != name.strip():
        raise ValueError(f"identity name must be non-empty without leading/trailing spaces, got {name!r}")
    if len(name) > _MAX_NAME:
        raise ValueError(f"identity name must be at most {_MAX_NAME} characters, got {len(name)}: {name[:40]!r}")
    for i, c in enumerate(name):
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(c))
        if kind is not None or (c.isspace() and c != " "):
            raise ValueError(f"identity name {name[:40]!r} holds a {kind or 'non-space whitespace'} character "
                             f"U+{ord(c):04X} ({unicodedata.name(c, 'unnamed')}) at position {i}: names must be "
                             "printable text that displays as it reads")
    return name


def _vector_problem(data: bytes, dim: int) -> str | None:
    """Why stored template bytes are not a finite unit vector of ``dim`` float32 (None when they are)."""
    if len(data) != 4 * dim:
        return f"{len(data)} bytes, expected {4 * dim} ({dim}-d float32)"
    v = np.frombuffer(data, "<f4").astype(np.float64)
    if not np.isfinite(v).all():
        return "holds NaN or infinite values"
    norm = float(np.linalg.norm(v))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        return f"has L2 norm {norm:.6g}, not 1 (templates are stored normalised)"
    return None


def _bad_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows of a (n, dim) float32 matrix that are not finite unit vectors (batched: index builds)."""
    with np.errstate(all="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    return np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))


def _check_resolutions(resolutions: Any, n: int, what: str = "resolutions") -> np.ndarray:
    try:
        res = np.asarray(resolutions, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be numbers, got {resolutions!r:.80}") from None
    if len(res) != n:
        raise ValueError(f"{what} has {len(res)} values for {n} vectors")
    if not np.isfinite(res).all() or (res < 1).any():
        raise ValueError(f"{what} must be finite and >= 1 px, got {res[:8].tolist()}")
    return res


def _check_hashes(hashes: Any, n: int) -> list[str | None]:
    if isinstance(hashes, str):
        raise TypeError("source_hashes must be a sequence of strings (one per template), not a string")
    hashes = list(hashes)
    if not hashes:
        return [None] * n
    if len(hashes) != n:
        raise ValueError(f"source_hashes has {len(hashes)} entries for {n} templates")
    for h in hashes:
        if not isinstance(h, str) or not h:
            raise TypeError(f"source hashes must be non-empty strings, got {h!r}")
    return hashes


def _check_metadata(metadata: Any) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None


def _check_thumbnails_shape(thumbnails: Any, hashes: list[str | None]) -> dict[str, bytes]:
    distinct = list(dict.fromkeys(h for h in hashes if h is not None))
    if isinstance(thumbnails, Mapping):
        images = dict(thumbnails)
        unknown = [h for h in images if h not in distinct]
        if unknown:
            raise ValueError(f"thumbnails for source hashes not among source_hashes: {unknown[:3]}")
    else:
        seq = list(thumbnails)
        if len(seq) != len(distinct):
            raise ValueError(f"thumbnails: {len(seq)} images for {len(distinct)} distinct source hashes "
                             "(give one per distinct source hash, or a mapping hash -> image)")
        images = dict(zip(distinct, seq))
    for h, img in images.items():
        if not isinstance(img, (bytes, bytearray, memoryview)) or len(img) == 0:
            raise TypeError(f"thumbnail for {h!r} must be non-empty encoded image bytes (e.g. PNG)")
    return {h: bytes(img) for h, img in images.items()}
