"""Rows as a gallery stores them, as a base class of :class:`~crres_sdk.gallery.core.Gallery`: sealing and
unsealing values, the MAC of every identity, template and thumbnail row, keeping the keyed row-set digest current
as rows are written and deleted, and the keyed audit rows that every write appends."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence

import numpy as np

from crres_sdk.gallery.errors import GalleryIntegrityError, GalleryKeyError
from crres_sdk.gallery.keys import _aad
from crres_sdk.gallery.validate import _vector_problem


class _Rows:
    """Reading and writing sealed, MACed rows inside the caller's transaction."""

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
