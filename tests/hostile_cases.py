"""Hostile edits of a gallery file made outside the SDK (issue 19), shared by tests/test_gallery_integrity.py and
benchmarks/hostile_inputs.py (which counts the outcomes).

Each case edits a small gallery (``build``) with raw SQL or on disk, as someone with write access to the file
would. ``outcome`` then classifies what the SDK does with the result:

* ``"refused"``: opening it raises a GalleryError (a clear error, nothing answered);
* ``"detected"``: ``check()`` reports problems and every read either raises GalleryError or answers exactly as
  before the edit;
* ``"silent"``: ``check()`` reports nothing, or a read answers differently without an error (undetected);
* ``"crash"``: something other than a GalleryError escaped.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crres_sdk.gallery import INTEGRITY_KEY_SUFFIX, Gallery, GalleryError, ModelKey, write_key_file

D = 8
MODEL = ModelKey("test-model", "1", D)
E = np.eye(D, dtype=np.float32)
KEY = bytes(range(100, 132))
PROBES = [(E[0], 112), (E[1], 14), (E[2], 112), (E[3], 28)]


def build(path: Path, encrypted: bool) -> None:
    with Gallery(path, MODEL, key=KEY if encrypted else None) as g:
        g.enroll("alice", E[:2], [112, 14], source_hashes=["ha", "ha"], metadata={"team": "a"})
        g.enroll("bob", E[2:3], [112], metadata={"team": "b"})
        g.enroll("carol", E[3:4], [28])


def open_gallery(path: Path, encrypted: bool, model: ModelKey | None = MODEL) -> Gallery:
    return Gallery(path, model, key=KEY if encrypted else None)


def answers(g: Gallery) -> dict:
    """Everything a user reads, to compare before and after an edit; a GalleryError in a read is recorded."""
    probes, res = np.stack([p for p, _ in PROBES]), [r for _, r in PROBES]
    reads = {
        "names": lambda: (list(g), len(g), g.n_templates, "alice" in g, "mallory" in g),
        "search": lambda: [[(m.identity, round(m.score, 5), m.template_resolution) for m in ms]
                           for ms in g.search(probes, res, top_k=3)],
        "identities": lambda: [(i.name, i.n_templates, i.resolutions, i.metadata) for i in g.identities()],
        "templates": lambda: [(r.identity, r.resolution, r.vector.tobytes()) for r in g.templates()],
    }
    out = {}
    for what, fn in reads.items():
        try:
            out[what] = fn()
        except GalleryError as exc:
            out[what] = ("error", type(exc).__name__)
    return out


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _vector_edit(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, bool], None]:
    def edit(path: Path, encrypted: bool) -> None:
        raw = _raw(path)
        blob, nonce = raw.execute("SELECT vector, nonce FROM templates WHERE id=1").fetchone()
        if encrypted:  # no key: the attacker can only plant a plaintext vector in place of the sealed one
            vec = E[0].copy()
        else:
            vec = np.frombuffer(blob, "<f4").copy()
        raw.execute("UPDATE templates SET vector=?, nonce=NULL WHERE id=1", (fn(vec).astype("<f4").tobytes(),))
        raw.close()
    return edit


def flip_byte(path, encrypted):
    raw = _raw(path)
    blob = bytearray(raw.execute("SELECT vector FROM templates WHERE id=1").fetchone()[0])
    blob[5] ^= 0x40
    raw.execute("UPDATE templates SET vector=? WHERE id=1", (bytes(blob),))
    raw.close()


def sql(*statements: str) -> Callable[[Path, bool], None]:
    def edit(path: Path, encrypted: bool) -> None:
        raw = _raw(path)
        for st in statements:
            raw.execute(st)
        raw.close()
    return edit


def recompute_audit_chain(path, encrypted):
    """Edit an audit row, then recompute the whole chain with the unkeyed format-1 hash."""
    raw = _raw(path)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET identity='mallory' WHERE action='enroll' AND identity='bob'")
    prev = ""
    for rid, t, action, who, count, detail in raw.execute(
            "SELECT id, time, action, identity, count, detail FROM audit ORDER BY id").fetchall():
        prev = hashlib.sha256(json.dumps([prev, repr(t), action, who, count, detail],
                                         ensure_ascii=True).encode()).hexdigest()
        raw.execute("UPDATE audit SET chain=? WHERE id=?", (prev, rid))
    raw.close()


def swap_macs(path, encrypted):
    raw = _raw(path)
    m1 = raw.execute("SELECT mac FROM templates WHERE id=1").fetchone()[0]
    m3 = raw.execute("SELECT mac FROM templates WHERE id=3").fetchone()[0]
    raw.execute("UPDATE templates SET mac=? WHERE id=1", (m3,))
    raw.execute("UPDATE templates SET mac=? WHERE id=3", (m1,))
    raw.close()


def swap_ciphertexts(path, encrypted):
    raw = _raw(path)
    rows = raw.execute("SELECT id, vector, nonce FROM templates WHERE id IN (1, 3) ORDER BY id").fetchall()
    raw.execute("UPDATE templates SET vector=?, nonce=? WHERE id=3", rows[0][1:])
    raw.execute("UPDATE templates SET vector=?, nonce=? WHERE id=1", rows[1][1:])
    raw.close()


def new_integrity_key(path, encrypted):
    key_file = Path(str(path) + INTEGRITY_KEY_SUFFIX)
    if key_file.exists():
        key_file.unlink()
        write_key_file(key_file)


def delete_integrity_key(path, encrypted):
    Path(str(path) + INTEGRITY_KEY_SUFFIX).unlink(missing_ok=True)


#: name -> edit(path, encrypted)
TAMPER_CASES: dict[str, Callable[[Path, bool], None]] = {
    "flip a template byte": flip_byte,
    "template x1000": _vector_edit(lambda v: v * 1000),
    "template NaN": _vector_edit(lambda v: np.full_like(v, math.nan)),
    "template replaced by another unit vector": _vector_edit(lambda v: np.roll(v, 3)),
    "move a template to another identity": sql("UPDATE templates SET identity_id=(SELECT id FROM identities "
                                                "WHERE name='bob') WHERE id=1"),
    "swap two names": sql("UPDATE identities SET name='tmp' WHERE name='alice'",
                          "UPDATE identities SET name='alice' WHERE name='bob'",
                          "UPDATE identities SET name='bob' WHERE name='tmp'"),
    "rename by SQL": sql("UPDATE identities SET name='mallory' WHERE name='alice'"),
    "change a stored resolution": sql("UPDATE templates SET resolution=112 WHERE id=2"),
    "change a source hash": sql("UPDATE templates SET source_hash='other' WHERE id=1"),
    "edit metadata": sql("UPDATE identities SET metadata=CAST('{\"team\": \"evil\"}' AS BLOB), metadata_nonce=NULL "
                         "WHERE name='alice'"),
    "delete an identity by SQL": sql("DELETE FROM identities WHERE name='carol'"),
    "delete a template by SQL": sql("DELETE FROM templates WHERE id=2"),
    "duplicate a template row": sql("INSERT INTO templates(identity_id, vector, nonce, resolution, source_hash, "
                                    "created, mac) SELECT identity_id, vector, nonce, resolution, source_hash, "
                                    "created, mac FROM templates WHERE id=1"),
    "copy a template to another identity": sql(
        "INSERT INTO templates(identity_id, vector, nonce, resolution, source_hash, created, mac) SELECT "
        "(SELECT id FROM identities WHERE name='bob'), vector, nonce, resolution, source_hash, created, mac "
        "FROM templates WHERE id=1"),
    "insert an identity by SQL": sql("INSERT INTO identities(name, created, updated) VALUES ('eve', 0, 0)"),
    "swap two template MACs": swap_macs,
    "swap two sealed/stored vectors": swap_ciphertexts,
    "truncate the audit tail": sql("DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id=(SELECT MAX(id) "
                                                                   "FROM audit)"),
    "truncate audit and sequence": sql("DROP TRIGGER audit_no_delete",
                                       "DELETE FROM audit WHERE id=(SELECT MAX(id) FROM audit)",
                                       "UPDATE sqlite_sequence SET seq=seq-1 WHERE name='audit'"),
    "edit audit and recompute the chain": recompute_audit_chain,
    "model name in meta": sql("UPDATE meta SET value='other' WHERE key='model_name'"),
    "model dim in meta": sql("UPDATE meta SET value='16' WHERE key='model_dim'"),
    "flip the encrypted flag": sql("UPDATE meta SET value=CASE value WHEN '1' THEN '0' ELSE '1' END "
                                   "WHERE key='encrypted'"),
    "downgrade the format": sql("UPDATE meta SET value='crres-gallery/1' WHERE key='format'"),
    "reset the row digest": sql("UPDATE meta SET value='" + "0" * 64 + "' WHERE key='state'"),
    "replace the integrity key file": new_integrity_key,
    "delete the integrity key file": delete_integrity_key,
}


#: Cases about the key file of plain galleries (an encrypted gallery has none: nothing to edit).
PLAIN_ONLY = {"replace the integrity key file", "delete the integrity key file"}


def outcome(path: Path, encrypted: bool, before: dict) -> tuple[str, str]:
    """(classification, detail) of the gallery at ``path`` after an edit; see the module docstring."""
    try:
        try:
            g = open_gallery(path, encrypted)
        except GalleryError as exc:
            try:  # the model binding itself may be what was edited: open with whatever it says
                g = open_gallery(path, encrypted, model=None)
            except GalleryError:
                return "refused", f"{type(exc).__name__}: {exc}"
        with g:
            problems = g.check()
            after = answers(g)
    except GalleryError as exc:
        return "refused", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - classified, not hidden
        return "crash", f"{type(exc).__name__}: {exc}"
    changed = [k for k in before if after[k] != before[k] and not (isinstance(after[k], tuple)
                                                                   and after[k][0] == "error")]
    if not problems:
        return "silent", "check() found nothing" + (f"; changed: {changed}" if changed else "")
    if changed:
        return "silent", f"check() reported {problems[:1]}, but {changed} answered differently without an error"
    return "detected", problems[0]
