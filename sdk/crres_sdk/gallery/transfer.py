"""Moving a gallery's contents, as a base class of :class:`~crres_sdk.gallery.core.Gallery`: re-embedding every
identity for a new model, exporting a consistent snapshot (itself a gallery file, optionally decrypted) and
importing an export of the same model with a conflict policy."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crres_sdk.gallery.errors import DuplicateIdentity, GalleryError, GalleryKeyError, GalleryModelMismatch
from crres_sdk.gallery.keys import INTEGRITY_KEY_SUFFIX, _BOUND_META, _aad, _resolve_key, _write_integrity_key
from crres_sdk.gallery.records import ModelKey, TemplateRecord
from crres_sdk.gallery.validate import _check_hashes, _check_resolutions


class _Transfer:
    """Re-embedding, export and import."""

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
            other = type(self)(path, None, create=False, readonly=True, key=open_key) if open_key is not None else \
                type(self)(path, None, create=False, readonly=True, integrity_key_file=integrity_key_file)
        except GalleryKeyError as exc:
            if src_key is None and self._key is not None and "not encrypted" in str(exc):
                other = type(self)(path, None, create=False, readonly=True, integrity_key_file=integrity_key_file)
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
