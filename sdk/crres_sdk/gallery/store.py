"""The SQLite side of a gallery, as a base class of :class:`~crres_sdk.gallery.core.Gallery`: the schema, the
writer connection and the pool of reader connections, read snapshots and ``BEGIN IMMEDIATE`` write transactions
that end by storing the keyed head, the meta entries, and opening a file: creating it, loading and verifying its
meta and key, upgrading a format-1 gallery in place, verifying the audit head and row digest before reads."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from crres_sdk.gallery.errors import (
    GalleryError,
    GalleryIntegrityError,
    GalleryKeyError,
    GalleryModelMismatch,
    GalleryUpgradeRequired,
)
from crres_sdk.gallery.keys import (
    _BOUND_META,
    _KEY_CHECK,
    _NONCE_BYTES,
    _aad,
    _aad_v1,
    _Integrity,
    _read_integrity_key,
    _write_integrity_key,
    generate_key,
)
from crres_sdk.gallery.records import FORMAT, FORMAT_V1, ModelKey
from crres_sdk.gallery.validate import _vector_problem

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


class _Store:
    """Connections, transactions and the file's format, for :class:`~crres_sdk.gallery.core.Gallery` (which
    sets the attributes these methods use in its ``__init__``)."""

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

    # ------------------------------------------------------------------------------------------- open state and the WAL

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.path} is closed")

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
