"""The :class:`Gallery` class: opening a gallery file (keys, integrity key, backend), enrolment and the other
writes, the reads that list identities, templates, thumbnails and the audit log, the integrity report, and
search through the cached, verified index. Storage, row sealing and transfer come from its base classes in
:mod:`~crres_sdk.gallery.store`, :mod:`~crres_sdk.gallery.rows` and :mod:`~crres_sdk.gallery.transfer`."""

from __future__ import annotations

import hmac
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crres_sdk.gallery.errors import DuplicateIdentity, GalleryError, GalleryIntegrityError, GalleryModelMismatch, \
    UnknownIdentity
from crres_sdk.gallery.index import _check_backend, _faiss_available, _import_faiss, _Index, auto_backend
from crres_sdk.gallery.keys import INTEGRITY_KEY_SUFFIX, _aad, _Cipher, _derived_integrity_key, _Integrity, _resolve_key
from crres_sdk.gallery.records import AuditEntry, IdentityInfo, Match, ModelKey, PhotoInfo, SourceImage, \
    TemplateRecord, resolution_level
from crres_sdk.gallery.rows import _Rows
from crres_sdk.gallery.store import _chain_v1, _Store
from crres_sdk.gallery.transfer import _Transfer
from crres_sdk.gallery.validate import NORM_TOLERANCE, _bad_rows, _check_hashes, _check_metadata, _check_name, \
    _check_resolutions, _check_thumbnails_shape, _vector_problem
from crres_sdk.preprocess import TEMPLATE_SIZE


class Gallery(_Transfer, _Rows, _Store):
    """A face gallery in one SQLite file, bound to one embedding model. See :mod:`crres_sdk.gallery`.

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

    # ------------------------------------------------------------------------------------------- argument checks

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
            res = np.full(len(p), float(TEMPLATE_SIZE))
        else:
            res = _check_resolutions(probe_resolutions, len(p), what="probe_resolutions")
        use = self.backend_for(fusion, backend, len(p))
        index = self._current_index()
        return index.search(p, None if match == "all" else res, int(top_k), fusion, use)

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
