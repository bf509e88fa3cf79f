"""Resolution-aware face gallery (DESIGN section 4): SQLite (WAL) bound to one embedding model.

A gallery holds identities and their templates: L2-normalised float32 vectors, each with the resolution (px) of
the face it was made from and a source hash. Enrolment stores the template of the high-resolution crop *and* of
degraded versions of it (gallery-side resolution matching, after the meet-in-the-middle paper); a probe of
resolution ``r`` is then compared, for every identity, only with that identity's templates at the *resolution
level* nearest ``r`` in log-resolution, and the identity's scores there are fused (``"max"`` = S_max, the default
after Grm et al. Table 3, or ``"add"`` = S_add, their mean)::

    from crres_sdk.gallery import Gallery, ModelKey

    with Gallery("people.db", ModelKey("crres-mfn", "1.0", 512)) as g:
        g.enroll("alice", templates, resolutions=[112, 28, 14, 7], source_hashes=[h, h, h, h])
        matches = g.search(probes, probe_resolutions=[9.5, 40.0], top_k=5)   # list (per probe) of Match

Resolution levels
    A template's level is its resolution rounded to whole pixels and capped at 112 (the canonical crop: a face
    seen larger than 112 px carries the information of a 112 px crop). For a probe at ``r`` each identity's
    level is the one of *its* levels nearest ``r`` in ``|log level - log r|`` (ties go to the higher level), so an
    identity enrolled without some degraded level still competes. ``match="all"`` compares with every template.

Integrity and privacy
    * Every write (enrol, remove, rename, import, re-embed) is one ``BEGIN IMMEDIATE`` transaction together with
      its audit row: no partial enrolment is ever visible and a crash loses at most the write in flight
      (``synchronous=FULL``: a committed enrolment also survives power loss).
    * No face images are stored unless the gallery is created with ``thumbnails=True`` (then one encoded image
      per source, e.g. the aligned HR crop as PNG, so the gallery can be re-embedded for a new model).
    * ``PRAGMA secure_delete=ON`` on every connection, and a WAL checkpoint (TRUNCATE) after ``remove``: the
      removed vectors are overwritten in the database file and the WAL no longer holds old copies.
    * Integrity key (every gallery, encrypted or not): a keyed MAC (HMAC-SHA256) binds every template to its
      vector, template id, identity id, identity *name*, resolution and source hash; every identity row to its
      name, metadata and creation time; every thumbnail to its identity. Templates are also checked finite and
      L2-normalised when read. Any edit made outside the gallery (bytes flipped, rows moved to another identity,
      names swapped, a resolution changed, a template scaled or set to NaN) makes reads raise
      :class:`GalleryIntegrityError` instead of changing answers. A plain gallery's 32-byte key is created with
      it in ``<gallery>.integrity-key`` (owner-only; or ``integrity_key_file=``): copy it with the gallery, and
      keep it where the database's editors cannot write if they are not trusted. An encrypted gallery derives it
      from the encryption key.
    * Optional at-rest encryption (``key=``/``key_file=``/``key_env=``; 32-byte AES-256-GCM key, needs
      ``pip install 'crres[crypto]'``): template vectors, thumbnails and metadata are sealed with a fresh 12-byte
      nonce each; the associated data binds a template to its identity id, identity name, template id and
      resolution (metadata to its identity id and name), so rows cannot be swapped or relabelled, nor two names
      swapped, without failing authentication. Identity names and the audit log stay in clear (names are the
      lookup key); opening an encrypted gallery without the right key fails at open.
    * The audit table is append-only (SQLite triggers ``RAISE(ABORT)`` on ``UPDATE``/``DELETE``) and chained
      with the integrity key (HMAC), so it cannot be recomputed after an edit. Every write also stores a keyed
      *head*: the last audit row and a keyed digest of the set of identity, template and thumbnail rows, so a
      truncated audit log and rows added or deleted by raw SQL are seen. :meth:`Gallery.check` verifies all of
      it and returns the problems (it never raises). What no file-level check can see: the whole gallery rolled
      back to an older copy of itself together with its key. Cost (512-d, 100k templates, 2-core VM under load):
      the first search after a write verifies every row, 3.1-3.7 s instead of 1.3-2.2 s; enrolment 5.3-6.7 s
      instead of 4.5-4.7 s; searches between writes are unchanged (the verified index is cached).
    * Galleries of the previous format (``crres-gallery/1``, no integrity key) are upgraded in place when
      opened with write access (checked first: audit chain, sealed rows, finite unit templates; audited as
      ``upgrade``); a read-only open asks for that (:class:`GalleryUpgradeRequired`).

Concurrency
    One writer and many readers, across threads and processes: writes go through one connection under a lock
    (and SQLite's own write lock across processes); searches borrow a reader connection from a pool, so they run
    while an enrolment is in progress and see the last committed state. The search matrix is cached in memory
    and rebuilt when the gallery's generation counter (bumped by every write, from any process) changes.

Search backends
    numpy BLAS by default. With ``faiss-cpu`` installed (``pip install 'crres[faiss]'``) ``backend="auto"`` uses
    a FAISS ``IndexFlatIP`` per resolution level for S_max for batches of at least :data:`FAISS_MIN_PROBES`
    probes once a level holds :data:`FAISS_MIN_TEMPLATES` templates (where ``benchmarks/bench_gallery.py``
    measured it to pay). Both are exact; S_add always uses numpy (a top-k template search cannot bound a mean).

Exports are themselves gallery files (a consistent SQLite snapshot made with the backup API) that keep the model
key; :meth:`Gallery.import_` refuses an export of another model. An encrypted gallery exports ciphertext unless
``decrypt=True`` is passed explicitly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import sqlite3
import struct
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np

from crres_sdk.errors import BackendUnavailableError
from crres_sdk.policy import CROP_SIZE, level_preference, template_level

__all__ = [
    "FORMAT",
    "FAISS_MIN_PROBES",
    "FAISS_MIN_TEMPLATES",
    "HR_LEVEL",
    "AuditEntry",
    "DuplicateIdentity",
    "Gallery",
    "GalleryError",
    "GalleryIntegrityError",
    "GalleryKeyError",
    "GalleryUpgradeRequired",
    "GalleryModelMismatch",
    "IdentityInfo",
    "Match",
    "ModelKey",
    "PhotoInfo",
    "SourceImage",
    "TemplateRecord",
    "UnknownIdentity",
    "auto_backend",
    "generate_key",
    "resolution_level",
    "write_key_file",
]

FORMAT = "crres-gallery/2"
#: The format before integrity keys: upgraded in place by a writable open.
FORMAT_V1 = "crres-gallery/1"
#: Where a plain gallery's integrity key lives by default: beside the database, this suffix appended.
INTEGRITY_KEY_SUFFIX = ".integrity-key"
#: Level of high-resolution templates: the canonical 112 px crop.
HR_LEVEL = float(CROP_SIZE)
#: ``backend="auto"`` uses FAISS for S_max only for batches of at least FAISS_MIN_PROBES probes against a gallery
#: whose largest resolution level holds at least FAISS_MIN_TEMPLATES templates. Measured with
#: benchmarks/bench_gallery.py (512-d, 2-core VM): flat search is memory-bound for both; FAISS was 1.15-1.22x
#: faster for 16-probe batches at 200k templates per level (1M-template gallery) with 1 and 2 threads, but from
#: 0.46x to 1.69x for single probes depending on threads and load, and within noise below that size.
FAISS_MIN_TEMPLATES = 200_000
FAISS_MIN_PROBES = 16
#: Tolerance on the L2 norm of enrolled templates.
NORM_TOLERANCE = 1e-3
_MAX_NAME = 256
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_CHECK = b"crres-gallery key check"
_PROBE_CHUNK_ELEMENTS = 1 << 24  # bound on probes x templates scores held at once (64 MiB of float32)


# --------------------------------------------------------------------------------------------------- errors


class GalleryError(ValueError):
    """A gallery operation cannot be done: not a gallery, closed, read-only, bad state."""


class GalleryModelMismatch(GalleryError):
    """The gallery (or an export) is bound to a different embedding model than the one given."""


class GalleryKeyError(GalleryError):
    """An encrypted gallery was opened without its key or with the wrong one, or a key is malformed; or a plain
    gallery's integrity key file is missing or belongs to another gallery."""


class GalleryIntegrityError(GalleryError):
    """Stored data fails its integrity check (altered outside the gallery): reads refuse rather than answer."""


class GalleryUpgradeRequired(GalleryError):
    """A gallery of an older format was opened read-only; opening it once with write access upgrades it."""


class UnknownIdentity(GalleryError, KeyError):
    """No identity of that name in the gallery."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdentity(GalleryError):
    """An identity of that name already exists (rename target, import with ``on_conflict="error"``)."""


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelKey:
    """The embedding model a gallery is bound to: templates of different models are not comparable."""

    name: str
    version: str
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ModelKey.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.version, str) or not self.version.strip():
            raise ValueError(f"ModelKey.version must be a non-empty string, got {self.version!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim <= 0:
            raise ValueError(f"ModelKey.dim must be a positive integer, got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ModelKey:
        """The key of an embedding bundle's manifest (``name``, ``version``, ``embedding_dim``)."""
        try:
            return cls(str(manifest["name"]), str(manifest["version"]), int(manifest["embedding_dim"]))
        except KeyError as exc:
            raise ValueError(f"manifest has no {exc.args[0]!r}: not an embedding model manifest") from None

    @classmethod
    def from_bundle(cls, bundle: Any) -> ModelKey:
        """The key of a loaded :class:`crres_sdk.ModelBundle` of task ``face-embedding``."""
        return cls.from_manifest(bundle.manifest)

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.dim}-d)"


@dataclass(frozen=True)
class Match:
    """One candidate for a probe: fused cosine score over the identity's templates at ``template_resolution``."""

    identity: str
    score: float
    template_resolution: float


@dataclass(frozen=True)
class IdentityInfo:
    name: str
    n_templates: int
    resolutions: tuple[float, ...]  # distinct resolution levels stored, ascending
    created: float  # unix time
    updated: float
    metadata: dict = field(default_factory=dict)
    n_thumbnails: int = 0


class TemplateRecord(NamedTuple):
    identity: str
    template_id: int
    vector: np.ndarray  # (dim,) float32
    resolution: float
    source_hash: str | None


class AuditEntry(NamedTuple):
    time: float
    action: str
    identity: str | None
    count: int
    detail: str | None


@dataclass(frozen=True)
class PhotoInfo:
    """One enrolment photo of an identity: the templates made from it (its HR crop and its degraded versions)."""

    source_hash: str | None   # sha256 of the decoded photo (None: templates enrolled without a source hash)
    n_templates: int
    resolution: float         # the highest resolution among its templates: the face's own probe resolution
    created: float            # unix time of its enrolment


@dataclass(frozen=True)
class SourceImage:
    """A stored source image (thumbnails=True galleries) handed to :meth:`Gallery.reembed`'s ``embed_fn``."""

    source_hash: str
    image: bytes  # as enrolled, e.g. PNG bytes of the aligned 112x112 crop


def resolution_level(resolution: float | np.ndarray) -> np.ndarray:
    """The level a template of this resolution is filed under: whole pixels, capped at :data:`HR_LEVEL`
    (:func:`crres_sdk.policy.template_level`)."""
    return template_level(resolution)


# --------------------------------------------------------------------------------------------------- keys


def generate_key() -> bytes:
    """A fresh random 32-byte AES-256 key."""
    return os.urandom(_KEY_BYTES)


def write_key_file(path: str | Path, key: bytes | None = None) -> bytes:
    """Write ``key`` (or a new one) as 64 hex characters to a new file readable by its owner only."""
    key = generate_key() if key is None else _check_key_bytes(key)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def _check_key_bytes(key: Any) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise GalleryKeyError(f"key must be {_KEY_BYTES} bytes, got {type(key).__name__}")
    key = bytes(key)
    if len(key) != _KEY_BYTES:
        raise GalleryKeyError(f"key must be {_KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def _parse_key_text(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) == _KEY_BYTES:
        return raw
    raise GalleryKeyError(f"{where}: expected a {_KEY_BYTES}-byte key as {2 * _KEY_BYTES} hex characters or base64")


def _resolve_key(key: bytes | None, key_file: str | Path | None, key_env: str | None) -> bytes | None:
    given = [n for n, v in (("key", key), ("key_file", key_file), ("key_env", key_env)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass at most one of key=, key_file=, key_env= (got {', '.join(given)})")
    if key is not None:
        return _check_key_bytes(key)
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes()
        except OSError as exc:
            raise GalleryKeyError(f"cannot read key file {key_file}: {exc.strerror or exc}") from exc
        if len(raw) == _KEY_BYTES:
            return raw
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise GalleryKeyError(f"key file {key_file}: {len(raw)} bytes, neither a raw {_KEY_BYTES}-byte key "
                                  "nor hex/base64 text") from None
        return _parse_key_text(text, f"key file {key_file}")
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            raise GalleryKeyError(f"environment variable {key_env} (key_env) is not set")
        return _parse_key_text(value, f"environment variable {key_env}")
    return None


class _Cipher:
    """AES-256-GCM with a random 96-bit nonce per sealed value and the row's identity as associated data."""

    def __init__(self, key: bytes):
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImportError("at-rest gallery encryption needs the 'cryptography' package: "
                              "pip install 'crres[crypto]'") from exc
        self._aead = AESGCM(key)
        self._invalid = InvalidTag

    def seal(self, data: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        return self._aead.encrypt(nonce, data, aad), nonce

    def open(self, sealed: bytes, nonce: bytes, aad: bytes, what: str) -> bytes:
        try:
            return self._aead.decrypt(bytes(nonce), bytes(sealed), aad)
        except self._invalid:
            raise GalleryKeyError(f"{what} fails authentication: wrong key, or the row was altered or moved") from None


def _aad_v1(kind: str, *parts: Any) -> bytes:
    """Associated data of format-1 galleries (read once, when upgrading them)."""
    return f"{FORMAT_V1}:{kind}:".encode() + b":".join(
        struct.pack("<d", p) if isinstance(p, float) else str(p).encode() for p in parts)


_U32, _I64, _F64 = struct.Struct("<I").pack, struct.Struct("<q").pack, struct.Struct("<d").pack


def _enc(*parts: Any) -> bytes:
    """Unambiguous encoding of MAC / associated-data fields: each typed and length-prefixed, so a name holding
    a separator cannot make two different rows encode alike."""
    out = []
    for p in parts:
        t = type(p)  # fast paths first: this runs for every row written, read and checked
        if t is str:
            data = p.encode()
            out.append(b"s" + _U32(len(data)) + data)
        elif t is int:
            out.append(b"i" + _I64(p))
        elif t is float:
            out.append(b"d" + _F64(p))
        elif t is bytes:
            out.append(b"s" + _U32(len(p)) + p)
        elif p is None:
            out.append(b"n")
        elif isinstance(p, bool):
            out.append(b"t" if p else b"f")
        elif isinstance(p, (int, np.integer)):
            out.append(b"i" + struct.pack("<q", int(p)))
        elif isinstance(p, (float, np.floating)):
            out.append(b"d" + struct.pack("<d", float(p)))
        else:
            data = p.encode() if isinstance(p, str) else bytes(p)
            out.append(b"s" + struct.pack("<I", len(data)) + data)
    return b"".join(out)


def _aad(kind: str, *parts: Any) -> bytes:
    return _enc(FORMAT, kind, *parts)


class _Integrity:
    """The gallery integrity key's uses: row MACs, the keyed audit chain, the head, the row-set digest."""

    def __init__(self, key: bytes):
        self.key = key

    def mac(self, kind: str, *parts: Any) -> bytes:
        return hmac.digest(self.key, _enc(FORMAT, kind, *parts), "sha256")  # one-shot C path: per-row cost

    def ok(self, stored: bytes | None, kind: str, *parts: Any) -> bool:
        return stored is not None and hmac.compare_digest(bytes(stored), self.mac(kind, *parts))

    def element(self, mac: bytes | None) -> int:
        """A row's share of the set digest (XOR of these over every live row). Keyed, so whoever deletes or adds
        a row by SQL cannot update the digest to match."""
        return int.from_bytes(hmac.digest(self.key, b"set:" + bytes(mac or b""), "sha256"), "big")

    def key_check(self) -> str:
        return self.mac("key-check").hex()

    def chain(self, prev: str, rid: int, t: float, action: str, identity: str | None, count: int,
              detail: str | None) -> str:
        return self.mac("audit", prev, rid, t, action, identity, count, detail).hex()

    def head(self, last_id: int, last_chain: str, state: str, keyed_from: int) -> str:
        return self.mac("head", last_id, last_chain, state, keyed_from).hex()

    def meta(self, fields: Mapping[str, str | None]) -> str:
        return self.mac("meta", *[x for k in _BOUND_META for x in (k, fields.get(k))]).hex()


#: Meta entries bound by the meta MAC (the rest are caches or covered by their own check).
_BOUND_META = ("format", "model_name", "model_version", "model_dim", "created", "thumbnails", "encrypted")


def _derived_integrity_key(aes_key: bytes) -> bytes:
    """An encrypted gallery's integrity key: a PRF of its encryption key (no second secret to keep)."""
    return hmac.new(aes_key, b"crres-gallery integrity key", hashlib.sha256).digest()


_PENDING = "pending-upgrade"


def _read_integrity_key(path: Path) -> tuple[bytes, bool] | None:
    """(key, pending) from an integrity key file, None when there is none; ``pending`` marks a key written by
    an upgrade that may not have committed."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryKeyError(f"cannot read the integrity key file {path}: {exc}") from exc
    lines = text.split()
    return _parse_key_text(lines[0] if lines else "", f"integrity key file {path}"), _PENDING in lines[1:]


def _write_integrity_key(path: Path, key: bytes, pending: bool = False) -> None:
    """Atomically (temporary file, fsync, rename), owner-only."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n" + (_PENDING + "\n" if pending else ""))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------- schema

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    metadata BLOB,
    metadata_nonce BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    mac BLOB
);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    nonce BLOB,
    resolution REAL NOT NULL,
    source_hash TEXT,
    created REAL NOT NULL,
    mac BLOB
);
CREATE INDEX templates_identity ON templates(identity_id);
CREATE TABLE sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source_hash TEXT NOT NULL,
    image BLOB NOT NULL,
    nonce BLOB,
    mac BLOB,
    UNIQUE (identity_id, source_hash)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    action TEXT NOT NULL,
    identity TEXT,
    count INTEGER NOT NULL,
    detail TEXT,
    chain TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _chain_v1(prev: str, t: float, action: str, identity: str | None, count: int, detail: str | None) -> str:
    payload = json.dumps([prev, repr(t), action, identity, count, detail], ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------- search index


@dataclass
class _Block:
    """Templates of one resolution level, rows grouped by identity."""

    level: float
    matrix: np.ndarray  # (n, D) float32, C-contiguous
    starts: np.ndarray  # (m,) first row of each identity segment
    counts: np.ndarray  # (m,) rows per segment
    seg_ident: np.ndarray  # (m,) identity index per segment
    row_ident: np.ndarray  # (n,) identity index per row
    row_resolution: np.ndarray  # (n,) px each row's template was made at (its level rounds and caps this)
    faiss_index: Any = None


class _Index:
    """In-memory search structure built from one consistent snapshot of the gallery."""

    def __init__(self, generation: int, names: list[str], ident: np.ndarray, resolutions: np.ndarray,
                 vectors: np.ndarray):
        self.generation = generation
        self.names = names
        self.n_templates = len(ident)
        levels_t = resolution_level(resolutions)
        self.levels, level_idx = np.unique(levels_t, return_inverse=True)
        self.has_level = np.zeros((len(names), len(self.levels)), bool)
        self.has_level[ident, level_idx] = True
        self.level_counts = np.zeros((len(names), len(self.levels)), np.int64)  # templates per identity and level
        np.add.at(self.level_counts, (ident, level_idx), 1)
        self._comparisons: dict[bytes, int] = {}
        self.blocks = [self._block(lv, vectors, ident, resolutions, level_idx == j)
                       for j, lv in enumerate(self.levels)]
        self._all: _Block | None = None  # match="all": built from the level blocks on first use
        self._per_identity: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # built on first use
        self.lock = threading.Lock()

    @staticmethod
    def _block(level: float, vectors: np.ndarray, ident: np.ndarray, resolutions: np.ndarray,
               mask: np.ndarray) -> _Block:
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(ident[rows], kind="stable")]
        row_ident = ident[rows]
        starts = np.flatnonzero(np.r_[True, row_ident[1:] != row_ident[:-1]]) if len(rows) else np.zeros(0, int)
        counts = np.diff(np.r_[starts, len(rows)])
        return _Block(float(level), np.ascontiguousarray(vectors[rows]), starts, counts, row_ident[starts], row_ident,
                      np.asarray(resolutions, np.float64)[rows])

    def all_block(self) -> _Block:
        with self.lock:
            if self._all is None:
                if self.blocks:
                    vectors = np.concatenate([b.matrix for b in self.blocks])
                    ident = np.concatenate([b.row_ident for b in self.blocks])
                    res = np.concatenate([b.row_resolution for b in self.blocks])
                else:
                    vectors, ident, res = np.zeros((0, 1), np.float32), np.zeros(0, np.int64), np.zeros(0)
                self._all = self._block(math.nan, vectors, ident, res, np.ones(len(ident), bool))
            return self._all

    def per_identity(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (templates (n, D), resolutions (n,))} of every identity with templates, as read-only views of
        one stacked copy: for matchers that score an identity's whole template set (meet-in-the-middle)."""
        block = self.all_block()  # takes the lock itself: not held here
        with self.lock:
            if self._per_identity is None:
                matrix, res = block.matrix.view(), block.row_resolution.view()
                matrix.flags.writeable = res.flags.writeable = False  # one copy shared by every caller
                self._per_identity = {
                    self.names[who]: (matrix[start:start + n], res[start:start + n])
                    for who, start, n in zip(block.seg_ident.tolist(), block.starts.tolist(), block.counts.tolist())}
            return self._per_identity

    def max_block_rows(self) -> int:
        return max((len(b.row_ident) for b in self.blocks), default=0)

    def chosen_levels(self, r: float) -> np.ndarray:
        """Per identity, the index of its level nearest ``r`` in log-resolution (ties: the higher level)."""
        order = level_preference(self.levels, r)  # the one rule (crres_sdk.policy)
        return order[np.argmax(self.has_level[:, order], axis=1)]

    def comparisons(self, r: float, fusion: str) -> int:
        """Impostor scores one probe at ``r`` is compared with: every identity's templates at its level nearest r
        (S_max: each template is a score the best of which counts), or one per identity (S_add: one mean)."""
        if not len(self.names) or not len(self.levels):
            return 0
        if fusion == "add":
            return int(np.count_nonzero(self.has_level.any(axis=1)))
        order = level_preference(self.levels, r)
        key = order.tobytes()  # every r with the same preference order has the same count: computed once
        got = self._comparisons.get(key)
        if got is None:
            chosen = order[np.argmax(self.has_level[:, order], axis=1)]
            got = self._comparisons[key] = int(self.level_counts[np.arange(len(self.names)), chosen].sum())
        return got

    def faiss_for(self, block: _Block) -> Any:
        with self.lock:
            if block.faiss_index is None:
                import faiss

                index = faiss.IndexFlatIP(block.matrix.shape[1])
                index.add(block.matrix)
                block.faiss_index = index
            return block.faiss_index

    def search(self, probes: np.ndarray, res: np.ndarray | None, top_k: int, fusion: str,
               backend: str) -> list[list[Match]]:
        n_ident = len(self.names)
        if n_ident == 0:
            return [[] for _ in range(len(probes))]
        if res is None:  # match="all"
            groups = {(): (np.arange(len(probes)), None)}
        else:
            groups: dict[tuple, tuple[list[int], np.ndarray]] = {}
            cache: dict[float, np.ndarray] = {}
            for i, r in enumerate(res.tolist()):
                if r not in cache:
                    cache[r] = self.chosen_levels(r)
                key = cache[r].tobytes()
                if key not in groups:
                    groups[key] = ([], cache[r])
                groups[key][0].append(i)
        results: list[list[Match]] = [[] for _ in range(len(probes))]
        for rows, chosen in groups.values():
            rows = np.asarray(rows)
            if chosen is None:
                parts = [(self.all_block(), None)]
            else:
                parts = [(self.blocks[j], chosen) for j in np.unique(chosen)]
            if backend == "faiss" and fusion == "max":
                cands = self._faiss_candidates(probes[rows], parts, top_k)
                for out_i, cand in zip(rows, cands):
                    cand.sort(key=lambda m: -m.score)
                    results[out_i] = cand[:top_k]
                continue
            scores = np.full((len(rows), n_ident), -np.inf, np.float32)
            level_of = np.zeros(n_ident)
            for block, ch in parts:
                seg = np.arange(len(block.seg_ident)) if ch is None else np.flatnonzero(
                    ch[block.seg_ident] == np.searchsorted(self.levels, block.level))
                if len(seg) == 0:
                    continue
                fused = self._fuse(probes[rows], block, fusion)
                scores[:, block.seg_ident[seg]] = fused[:, seg]
                level_of[block.seg_ident[seg]] = block.level
            k = min(top_k, n_ident)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_ident else np.tile(np.arange(n_ident),
                                                                                            (len(rows), 1))
            for out_i, cand, s in zip(rows, top, scores):
                cand = cand[np.argsort(-s[cand], kind="stable")]
                results[out_i] = [Match(self.names[c], float(s[c]), float(level_of[c])) for c in cand
                                  if np.isfinite(s[c])]
        return results

    @staticmethod
    def _fuse(probes: np.ndarray, block: _Block, fusion: str) -> np.ndarray:
        n = len(block.row_ident)
        chunk = max(1, _PROBE_CHUNK_ELEMENTS // max(n, 1))
        out = np.empty((len(probes), len(block.starts)), np.float32)
        for a in range(0, len(probes), chunk):
            s = probes[a:a + chunk] @ block.matrix.T
            if fusion == "max":
                out[a:a + chunk] = np.maximum.reduceat(s, block.starts, axis=1)
            else:
                out[a:a + chunk] = np.add.reduceat(s, block.starts, axis=1) / block.counts
        return out

    def _faiss_candidates(self, probes: np.ndarray, parts: list, top_k: int) -> list[list[Match]]:
        """Exact S_max top-k per level with FAISS: the first k distinct eligible identities in template order."""
        cands: list[list[Match]] = [[] for _ in range(len(probes))]
        for block, ch in parts:
            n = len(block.row_ident)
            if n == 0:
                continue
            eligible = None if ch is None else ch == np.searchsorted(self.levels, block.level)
            want = min(top_k, len(block.seg_ident) if eligible is None else int(eligible[block.seg_ident].sum()))
            if want == 0:
                continue
            index = self.faiss_for(block)
            todo = np.arange(len(probes))
            kk = min(n, top_k * int(block.counts.max()))
            while len(todo):
                dist, idx = index.search(probes[todo], kk)
                again = []
                for p, drow, irow in zip(todo, dist, idx):
                    seen: set[int] = set()
                    found = []
                    for d, t in zip(drow.tolist(), irow.tolist()):
                        if t < 0:
                            break
                        who = int(block.row_ident[t])
                        if who in seen or (eligible is not None and not eligible[who]):
                            continue
                        seen.add(who)
                        found.append(Match(self.names[who], float(d), block.level))
                        if len(found) == want:
                            break
                    if len(found) < want and kk < n:
                        again.append(p)
                    else:
                        cands[p].extend(found)
                todo = np.asarray(again, int)
                kk = min(n, kk * 4)
        return cands


# --------------------------------------------------------------------------------------------------- gallery


class Gallery:
    """A face gallery in one SQLite file, bound to one embedding model. See the module docstring.

    Args:
        path: the database file.
        model: the embedding model the templates come from; ``None`` opens an existing gallery with whatever
            model it is bound to (listing, export). A gallery of another model raises GalleryModelMismatch.
        create: create the file when missing (else FileNotFoundError).
        key / key_file / key_env: a 32-byte AES-256 key, a file holding it (raw, hex or base64) or the name of
            an environment variable holding it (hex or base64). Given when creating -> encrypted gallery.
        thumbnails: store one encoded face image per source (opt-in; needed for re-embedding from the gallery
            alone). Turning it on for an existing gallery is persisted and audited.
        readonly: open without write access (writes raise GalleryError).
        backend: search backend, ``"auto"`` | ``"numpy"`` | ``"faiss"``.
        integrity_key_file: a plain gallery's integrity key (default ``<path>.integrity-key``, created with the
            gallery when missing). Encrypted galleries derive theirs from ``key`` and take none.
    """

    def __init__(self, path: str | Path, model: ModelKey | None, *, create: bool = True, key: bytes | None = None,
                 key_file: str | Path | None = None, key_env: str | None = None, thumbnails: bool = False,
                 readonly: bool = False, backend: str = "auto", integrity_key_file: str | Path | None = None):
        if model is not None and not isinstance(model, ModelKey):
            raise TypeError("model must be a ModelKey (or None to open with the stored one), "
                            f"got {type(model).__name__}")
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError("a gallery needs a file path (reader threads open their own connections to it); "
                             f"got {str(path)!r}")
        self.path = Path(path)
        self.readonly = bool(readonly)
        self.backend = _check_backend(backend)
        self._key = _resolve_key(key, key_file, key_env)
        # A key means an encrypted gallery (a key for a plain gallery is refused at open).
        self._cipher: _Cipher | None = None if self._key is None else _Cipher(self._key)
        if self._key is not None and integrity_key_file is not None:
            raise ValueError("an encrypted gallery derives its integrity key from its encryption key: "
                             "integrity_key_file= is for plain galleries")
        self.integrity_key_file = Path(integrity_key_file) if integrity_key_file is not None else \
            Path(str(self.path) + INTEGRITY_KEY_SUFFIX)
        self._integ: _Integrity | None = None if self._key is None else _Integrity(
            _derived_integrity_key(self._key))
        self._delta = 0  # XOR of the set-digest elements added/removed by the write in progress
        self._closed = False
        self._write_lock = threading.RLock()
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._index: _Index | None = None
        self._index_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None

        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists and (not create or readonly):
            raise FileNotFoundError(f"no gallery at {self.path}" + ("" if readonly else " (create=False)"))
        if not exists and model is None:
            raise ValueError(f"creating the gallery {self.path} needs a model (ModelKey)")
        try:
            if not readonly:
                self._writer = self._connect(writer=True)
                self._init_or_check(model, thumbnails)
            else:
                conn = self._reader_checkout()
                try:
                    self._load_meta(conn, model)
                finally:
                    self._reader_return(conn)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------- connections

    def _connect(self, writer: bool) -> sqlite3.Connection:
        try:
            if self.readonly:
                conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=30,
                                       isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            if writer:
                conn.execute("PRAGMA synchronous=FULL")
            else:
                conn.execute("PRAGMA query_only=ON")
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path} cannot be opened as a gallery: {exc}") from exc
        return conn

    def _reader_checkout(self) -> sqlite3.Connection:
        self._check_open()
        with self._pool_lock:
            if self._pool:
                return self._pool.pop()
        conn = self._connect(writer=False)
        with self._pool_lock:
            self._all_readers.append(conn)
        if self._closed:
            conn.close()
            self._check_open()
        return conn

    def _reader_return(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if self._closed:
                conn.close()
            else:
                self._pool.append(conn)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A reader connection inside one read transaction (a consistent snapshot)."""
        conn = self._reader_checkout()
        try:
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:  # a corrupt or unreadable file: one clear error, not sqlite's
                raise GalleryError(f"gallery {self.path} cannot be read (corrupt file or I/O error): {exc}") from exc
        finally:
            self._reader_return(conn)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction on the writer connection; rolled back on any error."""
        self._check_open()
        if self.readonly or self._writer is None:
            raise GalleryError(f"gallery {self.path} is open read-only")
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"gallery {self.path}: cannot start a write: {exc}") from exc
            self._delta = 0
            try:
                self._check_bound(conn)
                yield conn
                self._finish_write(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.DatabaseError):  # disk full, I/O error, corrupt: say which, one line
                    raise GalleryError(f"gallery {self.path}: write failed and was rolled back, nothing "
                                       f"changed: {exc}") from exc
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        """Roll back what is still open. SQLite rolls some failures (disk full, I/O errors) back itself; a second
        ROLLBACK would then raise "no transaction is active" and hide the real cause."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass

    def _finish_write(self, conn: sqlite3.Connection) -> None:
        """Close a write: bump the generation, fold the write's row changes into the set digest and store the
        keyed head (last audit row + digest), all inside the write's transaction."""
        self._set_meta(conn, "generation", str(self._meta(conn, "generation", int) + 1))
        state = f"{int(self._meta(conn, 'state', str, '0' * 64), 16) ^ self._delta:064x}"
        self._delta = 0
        self._set_meta(conn, "state", state)
        last = conn.execute("SELECT id, chain FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        self._set_meta(conn, "audit_head", self._integ.head(last[0], last[1], state,
                                                            self._meta(conn, "audit_keyed_from", int)))

    # ------------------------------------------------------------------------------------------- meta

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str, cast: Callable = str, default: Any = None) -> Any:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else cast(row[0])

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                     (key, value))

    def _stored_model(self, conn: sqlite3.Connection) -> ModelKey:
        return ModelKey(self._meta(conn, "model_name"), self._meta(conn, "model_version"),
                        self._meta(conn, "model_dim", int))

    def _check_bound(self, conn: sqlite3.Connection) -> None:
        stored = self._stored_model(conn)
        if stored != self.model:
            raise GalleryModelMismatch(f"gallery {self.path} is now bound to model {stored} (re-embedded by another "
                                       f"writer), not {self.model}; reopen it with the new model")

    def _is_gallery(self, conn: sqlite3.Connection) -> bool:
        """False for an empty database; True for a gallery of this or the previous format; else GalleryError."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return False
        if "meta" not in tables or self._meta(conn, "format") is None:
            raise GalleryError(f"{self.path} is an SQLite database but not a crres gallery")
        fmt = self._meta(conn, "format")
        if fmt not in (FORMAT, FORMAT_V1):
            raise GalleryError(f"{self.path} is a {fmt!r} gallery; this SDK reads {FORMAT!r} (and upgrades "
                               f"{FORMAT_V1!r})")
        return True

    def _init_or_check(self, model: ModelKey | None, thumbnails: bool) -> None:
        conn = self._writer
        try:
            self._switch_to_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            self._rollback(conn)
            raise GalleryError(f"{self.path} cannot be opened as a gallery: {exc}") from exc
        self._delta = 0
        try:
            try:
                is_gallery = self._is_gallery(conn)
            except sqlite3.DatabaseError as exc:
                raise GalleryError(f"{self.path} cannot be opened as a gallery: {exc}") from exc
            if not is_gallery:
                if model is None:
                    raise ValueError(f"creating the gallery {self.path} needs a model (ModelKey)")
                self._create(conn, model, thumbnails)
            else:
                if self._meta(conn, "format") == FORMAT_V1:
                    self._upgrade_v1(conn, model)
                self._load_meta(conn, model)
                if thumbnails and not self.stores_thumbnails:
                    self._set_meta(conn, "thumbnails", "1")
                    self._set_meta(conn, "meta_mac", self._integ.meta(self._meta_fields(conn)))
                    self._audit(conn, "thumbnails-on", None, 0, None)
                    self._finish_write(conn)
            self.model = self._stored_model(conn)
            self.stores_thumbnails = self._meta(conn, "thumbnails") == "1"
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        if self._pending_key is not None:  # the upgrade committed: the key file is the gallery's for good
            _write_integrity_key(self.integrity_key_file, self._pending_key)
            self._pending_key = None

    _pending_key: bytes | None = None

    def _switch_to_wal(self, conn: sqlite3.Connection, timeout: float = 30.0) -> None:
        """``PRAGMA journal_mode=WAL``, retried: two processes creating the same gallery both hold a read lock
        when they ask for the exclusive one the switch needs, and SQLite answers one of them "database is locked"
        at once instead of waiting (its busy handler cannot break that deadlock)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        if mode != "wal":
            raise GalleryError(f"{self.path}: cannot switch the database to WAL mode (it stays {mode!r})")

    def _create(self, conn: sqlite3.Connection, model: ModelKey, thumbnails: bool) -> None:
        now = time.time()
        if self._integ is None:
            self._integ = _Integrity(self._plain_integrity_key(creating=True))
        for statement in _SCHEMA.split(";\n"):  # not executescript: it would COMMIT our transaction
            if statement.strip():
                conn.execute(statement)
        for k, v in {"format": FORMAT, "model_name": model.name, "model_version": model.version,
                     "model_dim": str(model.dim), "generation": "0", "created": repr(now),
                     "thumbnails": "1" if thumbnails else "0",
                     "encrypted": "1" if self._key is not None else "0",
                     "integrity_check": self._integ.key_check(), "audit_keyed_from": "1",
                     "state": "0" * 64}.items():
            self._set_meta(conn, k, v)
        self._set_meta(conn, "meta_mac", self._integ.meta(self._meta_fields(conn)))
        if self._cipher is not None:
            sealed, nonce = self._cipher.seal(_KEY_CHECK, _aad("key-check"))
            self._set_meta(conn, "key_check", (nonce + sealed).hex())
            self._set_meta(conn, "cipher", "AES-256-GCM")
        self._audit(conn, "create", None, 0, json.dumps({"model": str(model), "thumbnails": bool(thumbnails),
                                                         "encrypted": self._key is not None}))
        self._finish_write(conn)

    def _plain_integrity_key(self, creating: bool = False, upgrading: bool = False) -> bytes:
        """A plain gallery's integrity key from its key file; made (and written before the gallery commits, so
        a concurrent opener never finds a gallery without its key) when creating or upgrading."""
        path = self.integrity_key_file
        found = _read_integrity_key(path)
        if upgrading:
            if found is not None and not found[1]:
                raise GalleryIntegrityError(
                    f"{self.path} is a {FORMAT_V1!r} gallery, but an integrity key for it already exists at {path}: "
                    "it was upgraded before and has been downgraded since (tampering), or that key file belongs to "
                    "another gallery. Move the key file away to upgrade anyway.")
            key = found[0] if found is not None else generate_key()
            _write_integrity_key(path, key, pending=True)
            self._pending_key = key
            return key
        if found is not None:
            return found[0]
        if creating:
            key = generate_key()
            _write_integrity_key(path, key)
            return key
        raise GalleryKeyError(f"the integrity key of gallery {self.path} is missing: expected it in {path} "
                              "(created with the gallery; copy it along with the gallery, or pass "
                              "integrity_key_file=)")

    def _meta_fields(self, conn: sqlite3.Connection) -> dict[str, str | None]:
        return {k: self._meta(conn, k) for k in _BOUND_META}

    def _load_meta(self, conn: sqlite3.Connection, model: ModelKey | None) -> None:
        try:
            if not self._is_gallery(conn):
                raise GalleryError(f"{self.path} is empty, not a gallery")
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path} cannot be opened as a gallery: {exc}") from exc
        if self._meta(conn, "format") == FORMAT_V1:
            raise GalleryUpgradeRequired(
                f"{self.path} is a {FORMAT_V1!r} gallery (no integrity key); open it once with write access to "
                f"upgrade it to {FORMAT!r} (any write command, or `crres gallery upgrade --gallery {self.path}`)")
        stored = self._stored_model(conn)
        if model is not None and stored != model:
            raise GalleryModelMismatch(f"gallery {self.path} is bound to model {stored}, but was opened for model "
                                       f"{model}; open it with the model it was made for, or re-embed it "
                                       "(Gallery.reembed)")
        self.model = stored
        self.stores_thumbnails = self._meta(conn, "thumbnails") == "1"
        encrypted = self._meta(conn, "encrypted") == "1"
        if encrypted and self._key is None:
            raise GalleryKeyError(f"gallery {self.path} is encrypted: pass its key (key=, key_file= or key_env=)")
        if not encrypted and self._key is not None:
            raise GalleryKeyError(f"gallery {self.path} is not encrypted but a key was given; export it and import "
                                  "it into a new encrypted gallery to encrypt it")
        if encrypted:
            blob = bytes.fromhex(self._meta(conn, "key_check"))
            try:
                ok = self._cipher.open(blob[_NONCE_BYTES:], blob[:_NONCE_BYTES], _aad("key-check"), "key") == _KEY_CHECK
            except GalleryKeyError:
                ok = False
            if not ok:
                raise GalleryKeyError(f"wrong key for the encrypted gallery {self.path}")
        elif self._integ is None or self._pending_key is not None:
            self._integ = _Integrity(self._plain_integrity_key())
        if not hmac.compare_digest(self._meta(conn, "integrity_check", str, ""), self._integ.key_check()):
            raise GalleryKeyError(f"the integrity key in {self.integrity_key_file} is not the one of gallery "
                                  f"{self.path}" if not encrypted else
                                  f"gallery {self.path}: its integrity check value does not match its key (tampered)")
        self._verify_meta(conn)
        if not encrypted and not self.readonly and self._pending_key is None:
            found = _read_integrity_key(self.integrity_key_file)
            if found is not None and found[1]:  # an upgrade committed but died before clearing the marker
                _write_integrity_key(self.integrity_key_file, found[0])

    def _verify_meta(self, conn: sqlite3.Connection) -> None:
        if not hmac.compare_digest(self._meta(conn, "meta_mac", str, ""), self._integ.meta(self._meta_fields(conn))):
            raise GalleryIntegrityError(f"gallery {self.path}: its model binding, format or flags were altered "
                                        "outside the gallery (meta fails its integrity check)")

    def _verify_rows(self, conn: sqlite3.Connection) -> None:
        """The audit head and the keyed digest of every row (inside the caller's snapshot): rows deleted or added
        by SQL, or a truncated audit log, make reads refuse."""
        self._verify_meta(conn)
        state = self._meta(conn, "state", str, "")
        last = conn.execute("SELECT id, chain FROM audit ORDER BY id DESC LIMIT 1").fetchone() or (0, "")
        if not hmac.compare_digest(self._meta(conn, "audit_head", str, ""),
                                   self._integ.head(last[0], last[1], state, self._meta(conn, "audit_keyed_from", int, 1))):
            raise GalleryIntegrityError(f"gallery {self.path}: the audit log's head does not match (log truncated or "
                                        "altered outside the gallery); run `crres gallery check`")
        digest = 0
        for table in ("identities", "templates", "sources"):
            for (mac,) in conn.execute(f"SELECT mac FROM {table}"):
                digest ^= self._integ.element(mac)
        if f"{digest:064x}" != state:
            raise GalleryIntegrityError(f"gallery {self.path}: identities, templates or thumbnails were added or "
                                        "deleted outside the gallery; run `crres gallery check`")

    def _upgrade_v1(self, conn: sqlite3.Connection, model: ModelKey | None) -> None:
        """Upgrade a format-1 gallery in place (inside the caller's transaction): verify what format 1 could
        (audit hash chain, sealed rows, finite unit templates), then MAC every row, reseal with the name in the
        associated data, and continue the audit log keyed from here."""
        stored = self._stored_model(conn)
        if model is not None and stored != model:
            raise GalleryModelMismatch(f"gallery {self.path} is bound to model {stored}, but was opened for model "
                                       f"{model}")
        encrypted = self._meta(conn, "encrypted") == "1"
        if encrypted != (self._key is not None):
            raise GalleryKeyError(f"gallery {self.path} is {'' if encrypted else 'not '}encrypted: "
                                  + ("pass its key" if encrypted else "no key is needed"))
        if any(r[1] == "mac" for r in conn.execute("PRAGMA table_info(templates)")):
            raise GalleryIntegrityError(f"{self.path} says it is a {FORMAT_V1!r} gallery but has {FORMAT!r} tables: "
                                        "it was downgraded outside the gallery (tampering); not upgraded")
        problems = []
        prev, last_id = "", 0
        for rid, t, action, who, count, detail, chain in conn.execute(
                "SELECT id, time, action, identity, count, detail, chain FROM audit ORDER BY id"):
            if _chain_v1(prev, t, action, who, count, detail) != chain or rid != last_id + 1:
                problems.append(f"audit row {rid}: hash chain broken or rows missing")
            prev, last_id = chain, rid

        def unseal_v1(blob: bytes, nonce: bytes | None, aad: bytes, what: str) -> bytes:
            if (nonce is None) == encrypted:
                raise GalleryIntegrityError(f"{what}: sealed state does not match the gallery")
            return bytes(blob) if nonce is None else self._cipher.open(blob, nonce, aad, what)

        if encrypted:
            blob = bytes.fromhex(self._meta(conn, "key_check"))
            try:
                ok = self._cipher.open(blob[_NONCE_BYTES:], blob[:_NONCE_BYTES], _aad_v1("key-check"), "key") \
                    == _KEY_CHECK
            except GalleryKeyError:
                ok = False
            if not ok:
                raise GalleryKeyError(f"wrong key for the encrypted gallery {self.path}")
            sealed, nonce = self._cipher.seal(_KEY_CHECK, _aad("key-check"))
            self._set_meta(conn, "key_check", (nonce + sealed).hex())
        if self._integ is None:
            self._integ = _Integrity(self._plain_integrity_key(upgrading=True))
        for table in ("identities", "templates", "sources"):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN mac BLOB")
        names = {}
        dim = stored.dim
        try:
            for ident, name, blob, nonce, created in conn.execute(
                    "SELECT id, name, metadata, metadata_nonce, created FROM identities").fetchall():
                names[ident] = name
                meta = b"{}" if blob is None else unseal_v1(blob, nonce, _aad_v1("metadata", ident), "metadata")
                self._write_identity_row(conn, ident, name, meta, created)
            for tid, ident, blob, nonce, r, h in conn.execute(
                    "SELECT id, identity_id, vector, nonce, resolution, source_hash FROM templates").fetchall():
                vec = unseal_v1(blob, nonce, _aad_v1("template", ident, tid, float(r)), f"template {tid}")
                bad = _vector_problem(vec, dim)
                if bad:
                    problems.append(f"template {tid}: {bad}")
                    continue
                if ident not in names:
                    problems.append(f"template {tid}: belongs to no identity")
                    continue
                sealed, n2 = self._seal(vec, _aad("template", ident, names[ident], tid, float(r)))
                mac = self._integ.mac("template", tid, ident, names[ident], float(r), h, vec)
                conn.execute("UPDATE templates SET vector=?, nonce=?, mac=? WHERE id=?", (sealed, n2, mac, tid))
                self._delta ^= self._integ.element(mac)
            for sid, ident, h, img, nonce in conn.execute(
                    "SELECT id, identity_id, source_hash, image, nonce FROM sources").fetchall():
                data = unseal_v1(img, nonce, _aad_v1("source", ident, sid, h), f"thumbnail {sid}")
                sealed, n2 = self._seal(data, _aad("source", ident, sid, h))
                mac = self._integ.mac("source", sid, ident, h, data)
                conn.execute("UPDATE sources SET image=?, nonce=?, mac=? WHERE id=?", (sealed, n2, mac, sid))
                self._delta ^= self._integ.element(mac)
        except GalleryKeyError as exc:
            problems.append(str(exc))
        if problems:
            raise GalleryIntegrityError(f"{self.path} ({FORMAT_V1!r}) fails its checks, so it was not upgraded: "
                                        + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
        for k, v in {"format": FORMAT, "integrity_check": self._integ.key_check(),
                     "audit_keyed_from": str(last_id + 1), "state": "0" * 64}.items():
            self._set_meta(conn, k, v)
        self._set_meta(conn, "meta_mac", self._integ.meta(self._meta_fields(conn)))
        self._audit(conn, "upgrade", None, 0, json.dumps({"from": FORMAT_V1, "to": FORMAT}))
        self._finish_write(conn)

    @property
    def encrypted(self) -> bool:
        return self._cipher is not None

    @property
    def generation(self) -> int:
        """The write counter, bumped by every write from any process: a cache built from the templates read
        after this value was read stays current while it is unchanged."""
        self._check_open()
        with self._read() as conn:
            return self._meta(conn, "generation", int)

    # ------------------------------------------------------------------------------------------- helpers

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.path} is closed")

    def _audit(self, conn: sqlite3.Connection, action: str, identity: str | None, count: int,
               detail: str | None) -> None:
        row = conn.execute("SELECT chain FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        t = time.time()
        rid = self._next_id(conn, "audit")
        conn.execute("INSERT INTO audit(id, time, action, identity, count, detail, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (rid, t, action, identity, int(count), detail,
                      self._integ.chain(row[0] if row else "", rid, t, action, identity, int(count), detail)))

    def _next_id(self, conn: sqlite3.Connection, table: str) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name=?", (table,)).fetchone()
        return (row[0] if row else 0) + 1

    def _seal(self, data: bytes, aad: bytes) -> tuple[bytes, bytes | None]:
        if self._cipher is None:
            return data, None
        return self._cipher.seal(data, aad)

    def _unseal(self, data: bytes, nonce: bytes | None, aad: bytes, what: str) -> bytes:
        if self._cipher is None:
            if nonce is not None:
                raise GalleryIntegrityError(f"{what} is encrypted but the gallery is not marked encrypted: corrupt "
                                            "gallery")
            return bytes(data)
        if nonce is None:
            raise GalleryKeyError(f"{what} is stored unencrypted in an encrypted gallery: tampered")
        return self._cipher.open(data, nonce, aad, what)

    def _untrack(self, conn: sqlite3.Connection, table: str, where: str, params: tuple) -> None:
        """Take rows about to be deleted out of the set digest (call before the DELETE)."""
        for (mac,) in conn.execute(f"SELECT mac FROM {table} WHERE {where}", params):
            self._delta ^= self._integ.element(mac)

    def _template_bytes(self, tid: int, ident: int, name: str, blob: bytes, nonce: bytes | None, res: float,
                        source_hash: str | None, mac: bytes | None, check_vector: bool = True) -> bytes:
        """A template's vector bytes, authenticated (AEAD and MAC) and checked finite and unit-norm; else
        GalleryIntegrityError / GalleryKeyError naming the template and its identity."""
        what = f"template {tid} of {name!r}"
        data = self._unseal(blob, nonce, _aad("template", ident, name, tid, float(res)) if nonce is not None else b"",
                            what)
        if not self._integ.ok(mac, "template", tid, ident, name, float(res), source_hash, data):
            raise GalleryIntegrityError(f"gallery {self.path}: {what} fails its integrity check (vector, identity, "
                                        "name, resolution or source altered outside the gallery); run "
                                        "`crres gallery check`")
        bad = _vector_problem(data, self.model.dim) if check_vector else None
        if bad:
            raise GalleryIntegrityError(f"gallery {self.path}: {what}: {bad}")
        return data

    def _identity_metadata(self, ident: int, name: str, blob: bytes | None, nonce: bytes | None, created: float,
                           mac: bytes | None) -> dict:
        """An identity row's metadata, after checking the row's MAC (id, name, metadata, creation time)."""
        what = f"identity {ident} ({name!r})"
        data = b"{}" if blob is None else self._unseal(blob, nonce, _aad("metadata", ident, name), f"metadata of {what}")
        if not self._integ.ok(mac, "identity", ident, name, float(created), data):
            raise GalleryIntegrityError(f"gallery {self.path}: {what} fails its integrity check (name, metadata or "
                                        "creation time altered outside the gallery); run `crres gallery check`")
        return json.loads(data.decode())

    def _identity_row(self, conn: sqlite3.Connection, name: str) -> tuple | None:
        return conn.execute("SELECT id, metadata, metadata_nonce, created, mac FROM identities WHERE name=?",
                            (name,)).fetchone()

    def _row_metadata(self, row: tuple, name: str) -> dict:
        return self._identity_metadata(row[0], name, row[1], row[2], row[3], row[4])

    def _write_identity_row(self, conn: sqlite3.Connection, ident: int, name: str, meta: bytes, created: float,
                            now: float | None = None, insert: bool = False) -> None:
        """Insert or rewrite an identity row with its sealed metadata and MAC, keeping the set digest current."""
        blob, nonce = self._seal(meta, _aad("metadata", ident, name))
        mac = self._integ.mac("identity", ident, name, float(created), meta)
        if insert:
            conn.execute("INSERT INTO identities(id, name, metadata, metadata_nonce, created, updated, mac) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (ident, name, blob, nonce, created, now, mac))
        else:
            old = conn.execute("SELECT mac FROM identities WHERE id=?", (ident,)).fetchone()
            if old is not None and old[0] is not None:
                self._delta ^= self._integ.element(old[0])
            conn.execute("UPDATE identities SET name=?, metadata=?, metadata_nonce=?, mac=?" +
                         (", updated=?" if now is not None else "") + " WHERE id=?",
                         (name, blob, nonce, mac) + ((now,) if now is not None else ()) + (ident,))
        self._delta ^= self._integ.element(mac)

    def _insert_identity(self, conn: sqlite3.Connection, name: str, metadata: dict, created: float,
                         now: float) -> int:
        ident = self._next_id(conn, "identities")
        self._write_identity_row(conn, ident, name, json.dumps(metadata).encode(), created, now, insert=True)
        return ident

    def _insert_templates(self, conn: sqlite3.Connection, ident: int, name: str, vectors: np.ndarray,
                          res: np.ndarray, hashes: Sequence[str | None], now: float) -> None:
        first = self._next_id(conn, "templates")
        rows = []
        for i, (v, r, h) in enumerate(zip(vectors, res.tolist(), hashes)):
            tid = first + i
            data = v.astype("<f4").tobytes()
            blob, nonce = self._seal(data, _aad("template", ident, name, tid, float(r)) if self._cipher else b"")
            mac = self._integ.mac("template", tid, ident, name, float(r), h, data)
            self._delta ^= self._integ.element(mac)
            rows.append((tid, ident, blob, nonce, float(r), h, now, mac))
        conn.executemany("INSERT INTO templates(id, identity_id, vector, nonce, resolution, source_hash, created, mac) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _insert_sources(self, conn: sqlite3.Connection, ident: int, images: Mapping[str, bytes]) -> int:
        added = 0
        for h, img in images.items():
            if conn.execute("SELECT 1 FROM sources WHERE identity_id=? AND source_hash=?", (ident, h)).fetchone():
                continue
            sid = self._next_id(conn, "sources")
            blob, nonce = self._seal(bytes(img), _aad("source", ident, sid, h))
            mac = self._integ.mac("source", sid, ident, h, bytes(img))
            self._delta ^= self._integ.element(mac)
            conn.execute("INSERT INTO sources(id, identity_id, source_hash, image, nonce, mac) VALUES (?, ?, ?, ?, ?, ?)",
                         (sid, ident, h, blob, nonce, mac))
            added += 1
        return added

    def _source_bytes(self, sid: int, ident: int, h: str, img: bytes, nonce: bytes | None, mac: bytes | None) -> bytes:
        data = self._unseal(img, nonce, _aad("source", ident, sid, h), f"thumbnail {sid}")
        if not self._integ.ok(mac, "source", sid, ident, h, data):
            raise GalleryIntegrityError(f"gallery {self.path}: thumbnail {sid} fails its integrity check (altered "
                                        "or moved outside the gallery)")
        return data

    def _delete_identity(self, conn: sqlite3.Connection, ident: int) -> None:
        """Delete an identity with its templates and thumbnails (cascade), out of the set digest."""
        for table, col in (("templates", "identity_id"), ("sources", "identity_id"), ("identities", "id")):
            self._untrack(conn, table, f"{col}=?", (ident,))
        conn.execute("DELETE FROM identities WHERE id=?", (ident,))

    def _check_templates(self, templates: Any, dim: int, normalize: bool, what: str = "templates") -> np.ndarray:
        arr = np.asarray(templates)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{what} must be (N, {dim}) with N >= 1, got shape {np.shape(templates)}")
        if arr.shape[1] != dim:
            raise ValueError(f"{what} have dimension {arr.shape[1]}, but the gallery's model {self.model} makes "
                             f"{dim}-d embeddings")
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        norms = np.linalg.norm(arr.astype(np.float64), axis=1)
        if normalize:
            if (norms < 1e-12).any():
                raise ValueError(f"{what} contain a zero vector, which cannot be normalised")
            arr = (arr / norms[:, None]).astype(np.float32)
        elif (np.abs(norms - 1.0) > NORM_TOLERANCE).any():
            bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
            raise ValueError(f"{what} must be L2-normalised (|norm - 1| <= {NORM_TOLERANCE}); rows {bad[:5].tolist()} "
                             f"have norms {norms[bad[:5]].round(4).tolist()} (pass normalize=True to normalise)")
        return np.ascontiguousarray(arr)

    def _check_thumbnails(self, thumbnails: Any, hashes: list[str | None]) -> dict[str, bytes]:
        if thumbnails is None:
            return {}
        if not self.stores_thumbnails:
            raise GalleryError(f"gallery {self.path} does not store face images; open it with thumbnails=True "
                               "to opt in")
        if all(h is None for h in hashes):
            raise ValueError("thumbnails need source_hashes to say which source each image is")
        return _check_thumbnails_shape(thumbnails, hashes)

    # ------------------------------------------------------------------------------------------- writes

    def enroll(self, name: str, templates: np.ndarray, resolutions: Sequence[float] | np.ndarray, *,
               source_hashes: Sequence[str] = (), metadata: dict | None = None,
               thumbnails: Sequence[bytes] | Mapping[str, bytes] | None = None, replace: bool = False,
               normalize: bool = False) -> int:
        """Add templates to ``name`` (created if new) in one transaction with its audit row; returns their count.

        ``templates`` (N, dim), L2-normalised (or ``normalize=True``); ``resolutions`` (N,) px each template was
        made at (112 for the HR crop); ``source_hashes`` one per template (or empty) naming the photo it came
        from. An existing identity is appended to and its metadata updated with ``metadata``, unless
        ``replace=True``: then its templates, thumbnails and metadata are replaced. ``thumbnails`` (only for
        galleries with ``thumbnails=True``): encoded images keyed by source hash, or a sequence with one per
        distinct source hash in order of first appearance.
        """
        name = _check_name(name)
        vecs = self._check_templates(templates, self.model.dim, normalize)
        res = _check_resolutions(resolutions, len(vecs))
        hashes = _check_hashes(source_hashes, len(vecs))
        meta = _check_metadata(metadata)
        images = self._check_thumbnails(thumbnails, hashes)
        if not isinstance(replace, bool):
            raise TypeError("replace must be a bool")
        now = time.time()
        with self._write() as conn:
            row = self._identity_row(conn, name)
            action = "enroll"
            if row is None:
                ident = self._insert_identity(conn, name, meta or {}, now, now)
            else:
                ident = row[0]
                if replace:
                    action = "replace"
                    for table in ("templates", "sources"):
                        self._untrack(conn, table, "identity_id=?", (ident,))
                        conn.execute(f"DELETE FROM {table} WHERE identity_id=?", (ident,))
                    new_meta = meta or {}
                else:
                    new_meta = {**self._row_metadata(row, name), **(meta or {})}
                self._write_identity_row(conn, ident, name, json.dumps(new_meta).encode(), row[3], now)
            self._insert_templates(conn, ident, name, vecs, res, hashes, now)
            if images:
                self._insert_sources(conn, ident, images)
            self._audit(conn, action, name, len(vecs), None)
        if replace:
            self.purge_wal()  # the replaced templates leave no copies in the WAL
        return len(vecs)

    def remove(self, name: str) -> int:
        """Delete an identity with its templates and thumbnails (overwritten on disk); returns templates removed."""
        name = _check_name(name)
        with self._write() as conn:
            row = self._identity_row(conn, name)
            if row is None:
                raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
            count = conn.execute("SELECT COUNT(*) FROM templates WHERE identity_id=?", (row[0],)).fetchone()[0]
            self._delete_identity(conn, row[0])
            self._audit(conn, "remove", name, count, None)
        self.purge_wal()
        return count

    def photos(self, name: str) -> list[PhotoInfo]:
        """The enrolment photos of ``name`` (templates grouped by source hash), oldest first."""
        name = _check_name(name)
        self._current_index()  # verifies every row and the row digest first
        with self._read() as conn:
            row = self._identity_row(conn, name)
            if row is None:
                raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
            rows = conn.execute("SELECT source_hash, COUNT(*), MAX(resolution), MIN(created), MIN(id) FROM templates "
                                "WHERE identity_id=? GROUP BY source_hash ORDER BY MIN(id)", (row[0],)).fetchall()
        return [PhotoInfo(h, int(n), float(r), float(t)) for h, n, r, t, _ in rows]

    def remove_photo(self, name: str, photo: str) -> int:
        """Delete the templates (and thumbnail) of one enrolment photo of ``name``: ``photo`` is its source hash
        or a unique prefix of at least 8 hex characters (:meth:`photos` lists them). Returns templates removed.

        Refuses to remove an identity's only photo (remove the identity instead), so no identity is ever left
        without templates. One transaction with an audit row naming the photo; the WAL is purged afterwards.
        """
        name = _check_name(name)
        if not isinstance(photo, str) or len(photo) < 8 or any(c not in "0123456789abcdef" for c in photo.lower()):
            raise ValueError(f"photo must be a source hash or a prefix of at least 8 hex characters, got {photo!r}")
        photo = photo.lower()
        with self._write() as conn:
            row = self._identity_row(conn, name)
            if row is None:
                raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
            ident = row[0]
            hashes = [h for (h,) in conn.execute("SELECT DISTINCT source_hash FROM templates WHERE identity_id=?",
                                                 (ident,))]
            hits = [h for h in hashes if h is not None and h.startswith(photo)]
            if not hits:
                raise GalleryError(f"{name!r} has no photo {photo!r} in gallery {self.path} (its photos: "
                                   f"{', '.join(h[:12] if h else '<no hash>' for h in hashes) or 'none'})")
            if len(hits) > 1:
                raise GalleryError(f"{photo!r} matches {len(hits)} photos of {name!r}: give more of the hash")
            if len(hashes) == 1:
                raise GalleryError(f"{hits[0][:12]} is the only photo of {name!r}: remove the identity instead "
                                   f"(crres gallery remove {name!r})")
            h = hits[0]
            count = conn.execute("SELECT COUNT(*) FROM templates WHERE identity_id=? AND source_hash=?",
                                 (ident, h)).fetchone()[0]
            for table in ("templates", "sources"):
                self._untrack(conn, table, "identity_id=? AND source_hash=?", (ident, h))
                conn.execute(f"DELETE FROM {table} WHERE identity_id=? AND source_hash=?", (ident, h))
            meta = json.dumps(self._row_metadata(row, name)).encode()
            self._write_identity_row(conn, ident, name, meta, row[3], time.time())
            self._audit(conn, "remove-photo", name, count, h)
        self.purge_wal()
        return int(count)

    def comparisons(self, probe_resolution: float, fusion: str = "max") -> int:
        """How many impostor scores decide a probe at ``probe_resolution`` px: with S_max (``"max"``) every
        template of every identity at its level nearest the probe (N identities x k photos), with S_add one per
        identity. What the 1:N threshold policy (:mod:`crres_sdk.policy`) divides the FPIR by."""
        if fusion not in ("max", "add"):
            raise ValueError(f"fusion must be 'max' (S_max) or 'add' (S_add), got {fusion!r}")
        r = float(probe_resolution)
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"probe_resolution must be a positive number, got {probe_resolution!r}")
        return self._current_index().comparisons(r, fusion)

    def purge_wal(self) -> bool:
        """Checkpoint and truncate the WAL so it keeps no copies of deleted rows; False if readers held it open."""
        if self._writer is None:
            return False
        with self._write_lock:
            try:
                self._writer.execute("PRAGMA busy_timeout=2000")
                try:
                    busy = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    self._writer.execute("PRAGMA busy_timeout=30000")
            except sqlite3.DatabaseError as exc:  # the write itself is committed; say that the purge failed
                raise GalleryError(f"gallery {self.path}: the change is committed, but its write-ahead log could not "
                                   f"be checkpointed and truncated (old copies may remain in {self.path}-wal): "
                                   f"{exc}") from exc
        return busy == 0

    def rename(self, old: str, new: str) -> None:
        old, new = _check_name(old), _check_name(new)
        with self._write() as conn:
            row = self._identity_row(conn, old)
            if row is None:
                raise UnknownIdentity(f"no identity {old!r} in gallery {self.path}")
            if old == new:
                return
            if self._identity_row(conn, new) is not None:
                raise DuplicateIdentity(f"cannot rename {old!r} to {new!r}: {new!r} already exists")
            ident = row[0]
            meta = self._row_metadata(row, old)  # verified before it is signed under the new name
            self._write_identity_row(conn, ident, new, json.dumps(meta).encode(), row[3], time.time())
            # Templates carry the name in their MAC (and associated data): verify and re-sign each.
            rows = conn.execute("SELECT id, vector, nonce, resolution, source_hash, mac FROM templates "
                                "WHERE identity_id=?", (ident,)).fetchall()
            for tid, blob, nonce, r, h, mac in rows:
                data = self._template_bytes(tid, ident, old, blob, nonce, r, h, mac)
                sealed, n2 = self._seal(data, _aad("template", ident, new, tid, float(r)))
                mac2 = self._integ.mac("template", tid, ident, new, float(r), h, data)
                self._delta ^= self._integ.element(mac) ^ self._integ.element(mac2)
                conn.execute("UPDATE templates SET vector=?, nonce=?, mac=? WHERE id=?", (sealed, n2, mac2, tid))
            self._audit(conn, "rename", old, len(rows), json.dumps({"new": new}))

    def set_metadata(self, name: str, metadata: dict) -> None:
        """Replace an identity's metadata."""
        name, meta = _check_name(name), _check_metadata(metadata)
        with self._write() as conn:
            row = self._identity_row(conn, name)
            if row is None:
                raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
            self._row_metadata(row, name)  # a tampered row is not re-signed
            self._write_identity_row(conn, row[0], name, json.dumps(meta or {}).encode(), row[3], time.time())
            self._audit(conn, "metadata", name, 0, None)

    # ------------------------------------------------------------------------------------------- reads

    # Reads that answer from the database first pass the verified index (cached per write): rows added, deleted
    # or renamed outside the gallery make them raise GalleryIntegrityError rather than list them.

    def __len__(self) -> int:
        self._current_index()
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]

    def __contains__(self, name: object) -> bool:
        try:
            name = _check_name(name)
        except (TypeError, ValueError):
            return False
        self._current_index()
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM identities WHERE name=?", (name,)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        self._current_index()
        with self._read() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM identities ORDER BY name")]
        return iter(names)

    @property
    def n_templates(self) -> int:
        self._current_index()
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0]

    def identities(self) -> list[IdentityInfo]:
        """Every identity with template count, resolution levels, times, metadata; sorted by name."""
        self._current_index()  # verifies every row and the row digest (cached until the next write)
        with self._read() as conn:
            rows = conn.execute("SELECT id, name, metadata, metadata_nonce, created, updated, mac FROM identities "
                                "ORDER BY name").fetchall()
            res: dict[int, list[float]] = {}
            for ident, r in conn.execute("SELECT identity_id, resolution FROM templates"):
                res.setdefault(ident, []).append(r)
            thumbs = dict(conn.execute("SELECT identity_id, COUNT(*) FROM sources GROUP BY identity_id").fetchall())
        out = []
        for ident, name, blob, nonce, created, updated, mac in rows:
            levels = tuple(float(x) for x in np.unique(resolution_level(res.get(ident, [])))) if ident in res else ()
            out.append(IdentityInfo(name, len(res.get(ident, [])), levels, created, updated,
                                    self._identity_metadata(ident, name, blob, nonce, created, mac),
                                    thumbs.get(ident, 0)))
        return out

    def get(self, name: str) -> IdentityInfo:
        name = _check_name(name)
        for info in self.identities():
            if info.name == name:
                return info
        raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")

    def templates(self, name: str | None = None) -> Iterator[TemplateRecord]:
        """(identity, template id, vector, resolution, source hash) per template, decrypted; one identity or all.
        The rows are read at the call (one snapshot); vectors are decrypted as the iterator advances."""
        self._current_index()  # rows deleted or added outside the gallery make this refuse
        with self._read() as conn:
            sql = ("SELECT i.name, t.id, t.identity_id, t.vector, t.nonce, t.resolution, t.source_hash, t.mac "
                   "FROM templates t JOIN identities i ON i.id = t.identity_id")
            if name is not None:
                name = _check_name(name)
                if conn.execute("SELECT 1 FROM identities WHERE name=?", (name,)).fetchone() is None:
                    raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
                rows = conn.execute(sql + " WHERE i.name=? ORDER BY t.id", (name,)).fetchall()
            else:
                rows = conn.execute(sql + " ORDER BY i.name, t.id").fetchall()
        def records() -> Iterator[TemplateRecord]:
            for who, tid, ident, blob, nonce, r, h, mac in rows:
                vec = np.frombuffer(self._template_bytes(tid, ident, who, blob, nonce, r, h, mac), "<f4").astype(np.float32)
                yield TemplateRecord(who, tid, vec, r, h)

        return records()

    def thumbnails(self, name: str) -> list[SourceImage]:
        """The stored source images of one identity (empty unless the gallery stores thumbnails)."""
        name = _check_name(name)
        with self._read() as conn:
            row = self._identity_row(conn, name)
            if row is None:
                raise UnknownIdentity(f"no identity {name!r} in gallery {self.path}")
            rows = conn.execute("SELECT id, source_hash, image, nonce, mac FROM sources WHERE identity_id=? "
                                "ORDER BY id", (row[0],)).fetchall()
        return [SourceImage(h, self._source_bytes(sid, row[0], h, img, nonce, mac)) for sid, h, img, nonce, mac in rows]

    def audit_log(self) -> list[AuditEntry]:
        """The append-only audit trail, oldest first."""
        with self._read() as conn:
            return [AuditEntry(*r) for r in conn.execute(
                "SELECT time, action, identity, count, detail FROM audit ORDER BY id")]

    def check(self) -> list[str]:
        """Integrity report; returns the problems found (empty when the gallery is sound) and never raises.

        Verifies SQLite's integrity and foreign keys; the meta entries' MAC; the keyed audit chain, its row ids
        and its stored head (a truncated log shows); every identity row's MAC and sealed metadata; every
        template's AEAD/MAC, size, finiteness and norm; every thumbnail; and the keyed digest of the set of rows
        (rows added or deleted by raw SQL show)."""
        try:
            return self._check()
        except (sqlite3.DatabaseError, GalleryError, ValueError, OSError) as exc:
            return [f"the gallery cannot be read: {type(exc).__name__}: {exc}"]

    def _check(self) -> list[str]:
        problems: list[str] = []
        with self._read() as conn:
            ic = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            if ic != ["ok"]:
                problems += [f"integrity_check: {m}" for m in ic]
            problems += [f"foreign key: {r}" for r in conn.execute("PRAGMA foreign_key_check")]
            if not hmac.compare_digest(self._meta(conn, "meta_mac", str, ""), self._integ.meta(self._meta_fields(conn))):
                problems.append("meta: the model binding, format or flags were altered outside the gallery")
            keyed_from = self._meta(conn, "audit_keyed_from", int, 1)
            prev, expected_id, last = "", None, (0, "")
            for rid, t, action, who, count, detail, chain in conn.execute(
                    "SELECT id, time, action, identity, count, detail, chain FROM audit ORDER BY id"):
                want = (_chain_v1(prev, t, action, who, count, detail) if rid < keyed_from else
                        self._integ.chain(prev, rid, t, action, who, count, detail))
                if not hmac.compare_digest(want, chain):
                    problems.append(f"audit row {rid}: keyed chain broken (rows altered, removed or recomputed)")
                if expected_id is not None and rid != expected_id:
                    problems.append(f"audit rows {expected_id}..{rid - 1} missing")
                prev, expected_id, last = chain, rid + 1, (rid, chain)
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
            if seq and expected_id is not None and seq[0] != expected_id - 1:
                problems.append(f"audit rows after {expected_id - 1} missing (sequence at {seq[0]})")
            state = self._meta(conn, "state", str, "")
            if not hmac.compare_digest(self._meta(conn, "audit_head", str, ""),
                                       self._integ.head(last[0], last[1], state, keyed_from)):
                problems.append("audit head does not match the log: its tail was truncated, or the log or the row "
                                "digest was altered")
            idents = conn.execute("SELECT id, name, metadata, metadata_nonce, created, mac FROM identities").fetchall()
            templates = conn.execute("SELECT id, identity_id, vector, nonce, resolution, source_hash, mac "
                                     "FROM templates").fetchall()
            sources = conn.execute("SELECT id, identity_id, source_hash, image, nonce, mac FROM sources").fetchall()
        names, digest = {}, 0
        for ident, name, blob, nonce, created, mac in idents:
            names[ident] = name
            digest ^= self._integ.element(mac)
            try:
                self._identity_metadata(ident, name, blob, nonce, created, mac)
            except (GalleryError, ValueError) as exc:
                problems.append(str(exc))
        for tid, ident, blob, nonce, r, h, mac in templates:
            digest ^= self._integ.element(mac)
            if ident not in names:
                problems.append(f"template {tid}: its identity {ident} does not exist")
                continue
            try:
                self._template_bytes(tid, ident, names[ident], blob, nonce, r, h, mac)
            except GalleryError as exc:
                problems.append(str(exc))
        for sid, ident, h, img, nonce, mac in sources:
            digest ^= self._integ.element(mac)
            try:
                self._source_bytes(sid, ident, h, img, nonce, mac)
            except GalleryError as exc:
                problems.append(str(exc))
        if f"{digest:064x}" != state:
            problems.append("identities, templates or thumbnails were added or deleted outside the gallery (the keyed "
                            "digest of the rows does not match)")
        return problems

    # ------------------------------------------------------------------------------------------- search

    def _current_index(self) -> _Index:
        with self._read() as conn:
            gen = self._meta(conn, "generation", int)
            idx = self._index
            if idx is not None and idx.generation == gen:
                return idx
            with self._index_lock:
                idx = self._index
                if idx is not None and idx.generation == gen:
                    return idx
                stored = self._stored_model(conn)
                if stored != self.model:
                    raise GalleryModelMismatch(f"gallery {self.path} is now bound to model {stored} (re-embedded), "
                                               f"not {self.model}; reopen it with the new model")
                self._verify_rows(conn)
                id_rows = conn.execute("SELECT id, name, metadata, metadata_nonce, created, mac FROM identities "
                                       "ORDER BY id").fetchall()
                rows = conn.execute("SELECT identity_id, id, vector, nonce, resolution, source_hash, mac FROM templates "
                                    "ORDER BY identity_id, id").fetchall()
                for r in id_rows:  # a swapped or edited name must not answer for someone else's templates
                    self._identity_metadata(*r)
                names_rows = [(r[0], r[1]) for r in id_rows]
                pos = {ident: i for i, (ident, _) in enumerate(names_rows)}
                name_of = dict(names_rows)
                dim = self.model.dim
                blobs = []
                for ident, tid, blob, nonce, r, h, mac in rows:
                    if ident not in name_of:
                        raise GalleryIntegrityError(f"gallery {self.path}: template {tid} belongs to no identity")
                    blobs.append(self._template_bytes(tid, ident, name_of[ident], blob, nonce, r, h, mac,
                                                      check_vector=False))
                if any(len(b) != 4 * dim for b in blobs):
                    raise GalleryIntegrityError(f"gallery {self.path} holds templates of the wrong size for "
                                                f"{self.model}")
                vectors = np.frombuffer(b"".join(blobs), "<f4").reshape(len(rows), dim)  # copied into blocks
                del blobs
                bad = _bad_rows(vectors)
                if len(bad):
                    tid = rows[bad[0]][1]
                    raise GalleryIntegrityError(f"gallery {self.path}: template {tid} of "
                                                f"{name_of[rows[bad[0]][0]]!r}: "
                                                f"{_vector_problem(vectors[bad[0]].tobytes(), dim)}")
                ident = np.fromiter((pos[r[0]] for r in rows), np.int64, len(rows))
                res = np.fromiter((r[4] for r in rows), np.float64, len(rows))
                idx = _Index(gen, [n for _, n in names_rows], ident, res, vectors)
                self._index = idx
                return idx

    def templates_by_identity(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every identity's templates at once: {name: (vectors (n, dim) float32, resolutions (n,) px)}, read-only
        arrays from the search index of the gallery's current generation (decrypted once per write, not per call).
        Identities without templates are left out."""
        return self._current_index().per_identity()

    def backend_for(self, fusion: str = "max", backend: str | None = None, n_probes: int = 1) -> str:
        """The backend a search of ``n_probes`` probes with this fusion would use now (``"numpy"``/``"faiss"``)."""
        backend = self.backend if backend is None else _check_backend(backend)
        if backend == "numpy" or fusion != "max":
            return "numpy"
        if backend == "faiss":
            _import_faiss()
            return "faiss"
        if not _faiss_available():
            return "numpy"
        return auto_backend(self._current_index().max_block_rows(), n_probes)

    def search(self, probes: np.ndarray, probe_resolutions: Sequence[float] | np.ndarray | None = None, *,
               top_k: int = 5, fusion: str = "max", match: str = "nearest",
               backend: str | None = None) -> list[list[Match]]:
        """Top-k identities per probe, best first (fewer when the gallery has fewer identities).

        ``probes`` (N, dim) or (dim,) embeddings (normalised here); ``probe_resolutions`` (N,) px each probe face
        carries (None: all HR, 112). ``fusion``: ``"max"`` (S_max) or ``"add"`` (S_add, mean cosine) over the
        identity's templates at the level nearest the probe (``match="nearest"``) or over all its templates
        (``match="all"``). ``backend`` overrides the gallery's backend for this call. Each Match carries the
        level its score came from (``template_resolution``; NaN with ``match="all"``). Scores are cosines in
        [-1, 1]; thresholds per resolution come from the model's manifest, not from the gallery.
        """
        if fusion not in ("max", "add"):
            raise ValueError(f"fusion must be 'max' (S_max) or 'add' (S_add), got {fusion!r}")
        if match not in ("nearest", "all"):
            raise ValueError(f"match must be 'nearest' or 'all', got {match!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        p = self._check_templates(probes, self.model.dim, normalize=True, what="probes")
        if probe_resolutions is None:
            res = np.full(len(p), HR_LEVEL)
        else:
            res = _check_resolutions(probe_resolutions, len(p), what="probe_resolutions")
        use = self.backend_for(fusion, backend, len(p))
        index = self._current_index()
        return index.search(p, None if match == "all" else res, int(top_k), fusion, use)

    # ------------------------------------------------------------------------------------------- re-embedding

    def reembed(self, model: ModelKey, embed_fn: Callable[[str, list], tuple], *,
                sources: Mapping[str, Sequence[Any]] | None = None, missing: str = "error",
                progress: Callable[[int, int, str], None] | None = None) -> dict:
        """Bind the gallery to ``model``, replacing every template with ones ``embed_fn`` makes.

        Templates cannot be converted between models, so re-embedding needs the source material:
        * ``sources=None``: the gallery's stored images (``thumbnails=True`` galleries); ``embed_fn(name,
          [SourceImage, ...])`` gets them as enrolled (e.g. PNG bytes of the aligned crop).
        * ``sources={name: [anything, ...]}``: caller-supplied material per identity (paths, arrays), passed
          through to ``embed_fn(name, items)`` as given.
        ``embed_fn`` returns ``(templates (N, model.dim), resolutions (N,))`` or with ``source_hashes`` (N,) as
        a third element. Identities without material: ``missing="error"`` (default, nothing changes) or
        ``"remove"`` (they are deleted, audited). All embeddings are computed first, then written in one
        transaction: a failure leaves the gallery bound to the old model, and if another writer changed the
        gallery meanwhile the re-embed is refused (run it again). Returns a summary dict.
        """
        if not isinstance(model, ModelKey):
            raise TypeError(f"model must be a ModelKey, got {type(model).__name__}")
        if not callable(embed_fn):
            raise TypeError("embed_fn must be callable: embed_fn(identity, items) -> (templates, resolutions)")
        if missing not in ("error", "remove"):
            raise ValueError(f"missing must be 'error' or 'remove', got {missing!r}")
        if sources is None and not self.stores_thumbnails:
            raise GalleryError(f"gallery {self.path} stores no face images (created without thumbnails=True): "
                               "pass sources={identity: [images or paths, ...]} to re-embed it")
        if sources is not None and not isinstance(sources, Mapping):
            raise TypeError("sources must be a mapping identity -> sequence of source items")
        with self._read() as conn:
            gen0 = self._meta(conn, "generation", int)
        names = list(self)
        material: dict[str, list] = {}
        for name in names:
            items = list(sources.get(name, ())) if sources is not None else self.thumbnails(name)
            if items:
                material[name] = items
        lacking = [n for n in names if n not in material]
        if lacking and missing == "error":
            raise GalleryError(f"no source material for {len(lacking)} identities ({', '.join(lacking[:5])}"
                               f"{', ...' if len(lacking) > 5 else ''}): supply it or pass missing='remove'")
        new: dict[str, tuple] = {}
        for i, (name, items) in enumerate(material.items()):
            out = embed_fn(name, items)
            if not isinstance(out, tuple) or len(out) not in (2, 3):
                raise TypeError(f"embed_fn({name!r}, ...) must return (templates, resolutions[, source_hashes])")
            vecs = self._check_templates(out[0], model.dim, normalize=False, what=f"re-embedded templates of {name!r}")
            res = _check_resolutions(out[1], len(vecs))
            hashes = _check_hashes(out[2] if len(out) == 3 else (), len(vecs))
            new[name] = (vecs, res, hashes)
            if progress is not None:
                progress(i + 1, len(material), name)
        old = self.model
        now = time.time()
        with self._write() as conn:
            if self._meta(conn, "generation", int) != gen0:
                raise GalleryError(f"gallery {self.path} changed while re-embedding; nothing was written, run it again")
            for name in lacking:
                row = self._identity_row(conn, name)
                count = conn.execute("SELECT COUNT(*) FROM templates WHERE identity_id=?", (row[0],)).fetchone()[0]
                self._delete_identity(conn, row[0])
                self._audit(conn, "remove", name, count, "reembed: no source material")
            self._untrack(conn, "templates", "1", ())
            conn.execute("DELETE FROM templates")
            total = 0
            for name, (vecs, res, hashes) in new.items():
                ident = self._identity_row(conn, name)[0]
                self._insert_templates(conn, ident, name, vecs, res, hashes, now)
                conn.execute("UPDATE identities SET updated=? WHERE id=?", (now, ident))
                total += len(vecs)
            self._set_meta(conn, "model_name", model.name)
            self._set_meta(conn, "model_version", model.version)
            self._set_meta(conn, "model_dim", str(model.dim))
            self._set_meta(conn, "meta_mac", self._integ.meta(self._meta_fields(conn)))
            self._audit(conn, "reembed", None, total, json.dumps({"from": str(old), "to": str(model)}))
        self.model = model
        self.purge_wal()
        return {"identities": len(new), "templates": total, "removed": lacking, "model": str(model)}

    # ------------------------------------------------------------------------------------------- export/import

    def export(self, path: str | Path, *, decrypt: bool = False, overwrite: bool = False) -> Path:
        """Write a consistent snapshot of the gallery to ``path`` (itself a gallery file, same model key).

        An encrypted gallery's export stays encrypted under the same key unless ``decrypt=True`` is given.
        A plain (or decrypted) export gets its integrity key beside it (``<path>.integrity-key``): hand both
        over. Audited as ``export`` (``export-decrypted``) when the gallery is writable.
        """
        path = Path(path)
        if path.resolve() == self.path.resolve():
            raise ValueError("cannot export a gallery onto itself")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        src = self._reader_checkout()
        try:
            dest = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                src.backup(dest)
                n = dest.execute("SELECT COUNT(*) FROM templates").fetchone()[0]
                if decrypt and self._cipher is not None:
                    # Plaintext in place of each sealed value; the MACs (over plaintext) stay valid.
                    dest.execute("PRAGMA secure_delete=ON")
                    dest.execute("BEGIN")
                    names = dict(dest.execute("SELECT id, name FROM identities").fetchall())
                    for tid, ident, blob, nonce, r, h, mac in dest.execute(
                            "SELECT id, identity_id, vector, nonce, resolution, source_hash, mac FROM templates"
                    ).fetchall():
                        dest.execute("UPDATE templates SET vector=?, nonce=NULL WHERE id=?",
                                     (self._template_bytes(tid, ident, names.get(ident, ""), blob, nonce, r, h, mac),
                                      tid))
                    for sid, ident, h, img, nonce, mac in dest.execute(
                            "SELECT id, identity_id, source_hash, image, nonce, mac FROM sources").fetchall():
                        dest.execute("UPDATE sources SET image=?, nonce=NULL WHERE id=?",
                                     (self._source_bytes(sid, ident, h, img, nonce, mac), sid))
                    for ident, name, blob, nonce, created, mac in dest.execute(
                            "SELECT id, name, metadata, metadata_nonce, created, mac FROM identities").fetchall():
                        self._identity_metadata(ident, name, blob, nonce, created, mac)
                        meta = None if blob is None else self._unseal(blob, nonce, _aad("metadata", ident, name), "")
                        dest.execute("UPDATE identities SET metadata=?, metadata_nonce=NULL WHERE id=?", (meta, ident))
                    dest.execute("UPDATE meta SET value='0' WHERE key='encrypted'")
                    dest.execute("DELETE FROM meta WHERE key IN ('key_check', 'cipher')")
                    fields = {k: (r[0] if (r := dest.execute("SELECT value FROM meta WHERE key=?", (k,)).fetchone())
                                  else None) for k in _BOUND_META}
                    dest.execute("UPDATE meta SET value=? WHERE key='meta_mac'", (self._integ.meta(fields),))
                    dest.execute("COMMIT")
                dest.execute("PRAGMA journal_mode=WAL")
                dest.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                dest.close()
        finally:
            self._reader_return(src)
        if self._cipher is None or decrypt:
            _write_integrity_key(Path(str(path) + INTEGRITY_KEY_SUFFIX), self._integ.key)
        os.replace(tmp, path)
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        if not self.readonly:
            action = "export-decrypted" if decrypt and self._cipher is not None else "export"
            with self._write() as conn:
                self._audit(conn, action, None, n, json.dumps({"path": str(path)}))
        return path

    def import_(self, path: str | Path, on_conflict: str = "skip", *, key: bytes | None = None,
                key_file: str | Path | None = None, key_env: str | None = None,
                integrity_key_file: str | Path | None = None) -> dict:
        """Import the identities of an exported gallery (same model) in one transaction, audited per identity.

        ``on_conflict`` for names present in both: ``"skip"`` (keep ours), ``"replace"`` (take theirs),
        ``"merge"`` (append their templates), ``"error"`` (raise DuplicateIdentity, import nothing). An encrypted
        export is opened with the given key, or with this gallery's key when none is given. Thumbnails are
        imported only when this gallery stores thumbnails (else counted in ``thumbnails_dropped``).
        """
        if on_conflict not in ("skip", "replace", "merge", "error"):
            raise ValueError(f"on_conflict must be 'skip', 'replace', 'merge' or 'error', got {on_conflict!r}")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no gallery export at {path}")
        src_key = _resolve_key(key, key_file, key_env)
        open_key = src_key or self._key
        try:
            other = Gallery(path, None, create=False, readonly=True, key=open_key) if open_key is not None else \
                Gallery(path, None, create=False, readonly=True, integrity_key_file=integrity_key_file)
        except GalleryKeyError as exc:
            if src_key is None and self._key is not None and "not encrypted" in str(exc):
                other = Gallery(path, None, create=False, readonly=True, integrity_key_file=integrity_key_file)
            else:
                raise
        try:
            if other.model != self.model:
                raise GalleryModelMismatch(f"cannot import {path}: it holds templates of model {other.model}, this "
                                           f"gallery {self.path} is bound to {self.model}")
            records: dict[str, list[TemplateRecord]] = {}
            for rec in other.templates():
                records.setdefault(rec.identity, []).append(rec)
            infos = other.identities()
            thumbs = {i.name: other.thumbnails(i.name) for i in infos if i.n_thumbnails}
        finally:
            other.close()
        summary = {"imported": 0, "skipped": 0, "replaced": 0, "merged": 0, "templates": 0, "thumbnails_dropped": 0}
        now = time.time()
        with self._write() as conn:
            conflicts = [i.name for i in infos if self._identity_row(conn, i.name) is not None]
            if conflicts and on_conflict == "error":
                raise DuplicateIdentity(f"cannot import {path}: {len(conflicts)} identities exist already "
                                        f"({', '.join(conflicts[:5])}{', ...' if len(conflicts) > 5 else ''})")
            for info in infos:
                recs = records.get(info.name, [])
                row = self._identity_row(conn, info.name)
                if row is not None and on_conflict == "skip":
                    summary["skipped"] += 1
                    continue
                if row is None:
                    ident = self._insert_identity(conn, info.name, info.metadata, info.created, now)
                    summary["imported"] += 1
                elif on_conflict == "replace":
                    self._delete_identity(conn, row[0])
                    ident = self._insert_identity(conn, info.name, info.metadata, info.created, now)
                    summary["replaced"] += 1
                else:  # merge
                    ident = row[0]
                    merged = {**self._row_metadata(row, info.name), **info.metadata}
                    self._write_identity_row(conn, ident, info.name, json.dumps(merged).encode(), row[3], now)
                    summary["merged"] += 1
                if recs:
                    vecs = np.stack([r.vector for r in recs])
                    self._insert_templates(conn, ident, info.name, vecs, np.array([r.resolution for r in recs]),
                                           [r.source_hash for r in recs], now)
                images = {s.source_hash: s.image for s in thumbs.get(info.name, [])}
                if images and self.stores_thumbnails:
                    self._insert_sources(conn, ident, images)
                else:
                    summary["thumbnails_dropped"] += len(images)
                summary["templates"] += len(recs)
                self._audit(conn, "import", info.name, len(recs), json.dumps({"from": str(path),
                                                                               "mode": on_conflict}))
        if summary["replaced"]:
            self.purge_wal()
        return summary

    # ------------------------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        with self._write_lock:
            with self._pool_lock:
                self._closed = True
                readers, self._pool, self._all_readers = self._all_readers, [], []
            for conn in readers:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # in use by another thread right now; it closes on return
                    pass
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._index = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("encrypted" if self.encrypted else "plain")
        return f"Gallery({str(self.path)!r}, model={getattr(self, 'model', None)}, {state})"


# --------------------------------------------------------------------------------------------------- validation


def auto_backend(level_rows: int, n_probes: int) -> str:
    """``backend="auto"``'s choice for S_max (FAISS assumed installed): see FAISS_MIN_TEMPLATES."""
    return "faiss" if level_rows >= FAISS_MIN_TEMPLATES and n_probes >= FAISS_MIN_PROBES else "numpy"


def _check_backend(backend: str) -> str:
    if backend not in ("auto", "numpy", "faiss"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
    if backend == "faiss":
        _import_faiss()
    return backend


def _faiss_available() -> bool:
    try:
        _import_faiss()
    except BackendUnavailableError:
        return False
    return True


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailableError("the FAISS gallery backend needs faiss-cpu: pip install 'crres[faiss]'") from exc
    return faiss


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
