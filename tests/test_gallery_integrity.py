"""Gallery integrity against edits made outside the SDK (issue 19 item 2): keyed MACs over template + name +
resolution, names in the AEAD associated data, norms and finiteness on read, the keyed audit chain and its head,
``check()`` that reports and never raises, the integrity key file, and the upgrade of format-1 galleries."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from crres_sdk.gallery import (
    FORMAT,
    FORMAT_V1,
    INTEGRITY_KEY_SUFFIX,
    Gallery,
    GalleryError,
    GalleryIntegrityError,
    GalleryKeyError,
    GalleryUpgradeRequired,
)
from tests import hostile_cases as hc

DATA = Path(__file__).with_name("data")


def has_crypto() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


MODES = [False, pytest.param(True, marks=pytest.mark.skipif(not has_crypto(), reason="pip install 'crres[crypto]'"))]


@pytest.mark.parametrize("encrypted", MODES, ids=["plain", "encrypted"])
def test_untouched_gallery_is_sound(tmp_path, encrypted):
    path = tmp_path / "g.db"
    hc.build(path, encrypted)
    with hc.open_gallery(path, encrypted) as g:
        assert g.check() == []
        got = hc.answers(g)
    assert got["search"][0][0] == ("alice", 1.0, 112.0) and got["search"][2][0][0] == "bob"
    assert [n for n, *_ in got["identities"]] == ["alice", "bob", "carol"]
    assert Path(str(path) + INTEGRITY_KEY_SUFFIX).exists() != encrypted  # plain: key file made with the gallery


@pytest.mark.parametrize("encrypted", MODES, ids=["plain", "encrypted"])
@pytest.mark.parametrize("case", sorted(hc.TAMPER_CASES))
def test_every_tampering_is_detected_or_refused(tmp_path, case, encrypted):
    if encrypted and case in hc.PLAIN_ONLY:
        pytest.skip("encrypted galleries keep no integrity key file")
    path = tmp_path / "g.db"
    hc.build(path, encrypted)
    with hc.open_gallery(path, encrypted) as g:
        before = hc.answers(g)
    hc.TAMPER_CASES[case](path, encrypted)
    kind, detail = hc.outcome(path, encrypted, before)
    assert kind in ("refused", "detected"), f"{case}: {kind}: {detail}"


def test_the_tampering_cases_change_the_file(tmp_path):
    """Each case really edits something (a no-op edit would 'pass' as undetected-but-harmless)."""
    for case, edit in hc.TAMPER_CASES.items():
        path = tmp_path / f"{abs(hash(case))}.db"
        hc.build(path, False)
        key_file = Path(str(path) + INTEGRITY_KEY_SUFFIX)
        before = path.read_bytes() + key_file.read_bytes()
        edit(path, False)
        after = path.read_bytes() + (key_file.read_bytes() if key_file.exists() else b"")
        assert after != before, case


def test_scaled_template_no_longer_matches_everything(tmp_path):
    """The issue's example: a template x1000 scored 'cosine' 247.8 against any face. Now reads refuse."""
    path = tmp_path / "g.db"
    hc.build(path, False)
    hc.TAMPER_CASES["template x1000"](path, False)
    with hc.open_gallery(path, False) as g:
        with pytest.raises(GalleryIntegrityError, match="template 1 of 'alice' fails its integrity check"):
            g.search(hc.E[5])
        assert any("template 1 of 'alice'" in p for p in g.check())


def test_swapped_names_are_refused_in_encrypted_galleries(tmp_path):
    pytest.importorskip("cryptography")
    path = tmp_path / "g.db"
    hc.build(path, True)
    hc.TAMPER_CASES["swap two names"](path, True)
    with hc.open_gallery(path, True) as g:
        with pytest.raises(GalleryKeyError, match="fails authentication"):
            g.search(hc.E[0])
        problems = g.check()
    assert any("'bob'" in p and "authentication" in p for p in problems), problems


def test_truncated_audit_log_is_seen(tmp_path):
    path = tmp_path / "g.db"
    hc.build(path, False)
    hc.TAMPER_CASES["truncate audit and sequence"](path, False)
    with hc.open_gallery(path, False) as g:
        assert [p for p in g.check() if "audit head" in p]


def test_check_never_raises(tmp_path):
    path = tmp_path / "g.db"
    hc.build(path, False)
    with hc.open_gallery(path, False) as g:
        raw = sqlite3.connect(path)
        raw.execute("DROP TABLE sources")  # the schema itself damaged under an open gallery
        raw.commit()
        raw.close()
        problems = g.check()
    assert problems and "cannot be read" in problems[0]


def test_integrity_key_file_is_needed_and_travels_with_exports(tmp_path):
    path = tmp_path / "g.db"
    hc.build(path, False)
    key_file = Path(str(path) + INTEGRITY_KEY_SUFFIX)
    assert key_file.stat().st_mode & 0o077 == 0
    moved = tmp_path / "vault.key"
    key_file.rename(moved)
    with pytest.raises(GalleryKeyError, match="integrity key of gallery .* is missing"):
        Gallery(path, hc.MODEL)
    with Gallery(path, hc.MODEL, integrity_key_file=moved) as g:  # kept elsewhere: named explicitly
        assert g.check() == []
        exported = g.export(tmp_path / "out.export")
    assert Path(str(exported) + INTEGRITY_KEY_SUFFIX).exists()
    with Gallery(tmp_path / "other.db", hc.MODEL) as other:
        assert other.import_(exported)["imported"] == 3 and other.check() == []
    with pytest.raises(ValueError, match="integrity_key_file= is for plain galleries"):
        Gallery(tmp_path / "x.db", hc.MODEL, key=hc.KEY, integrity_key_file=moved)


def test_decrypted_export_is_a_sound_plain_gallery(tmp_path):
    pytest.importorskip("cryptography")
    path = tmp_path / "g.db"
    hc.build(path, True)
    with hc.open_gallery(path, True) as g:
        plain = g.export(tmp_path / "plain.export", decrypt=True)
    with Gallery(plain, hc.MODEL, readonly=True) as p:
        assert not p.encrypted and p.check() == []
        assert p.search(hc.E[0])[0][0].identity == "alice"


@pytest.mark.parametrize("encrypted", MODES, ids=["plain", "encrypted"])
def test_format_1_gallery_is_upgraded_in_place(tmp_path, encrypted):
    src = DATA / f"gallery_v1_{'encrypted' if encrypted else 'plain'}.db"  # written by the format-1 SDK
    path = tmp_path / "old.db"
    shutil.copy(src, path)
    key = bytes(range(32)) if encrypted else None
    with pytest.raises(GalleryUpgradeRequired, match="open it once with write access"):
        Gallery(path, None, readonly=True, key=key)
    with Gallery(path, None, key=key) as g:
        assert g.check() == []
        assert [e.action for e in g.audit_log()] == ["create", "enroll", "enroll", "enroll", "remove", "rename",
                                                     "upgrade"]
        assert list(g) == ["alice", "bobby"] and g.get("alice").metadata == {"team": "a"}
        assert [(m.identity, round(m.score, 5)) for m in g.search(hc.E[1], [14])[0]][0] == ("alice", 1.0)
        g.enroll("dave", hc.E[5:6], [112])
        assert g.check() == []
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='format'").fetchone()[0] == FORMAT
    with Gallery(path, None, readonly=True, key=key) as g:
        assert list(g) == ["alice", "bobby", "dave"]
    if not encrypted:
        assert "pending" not in Path(str(path) + INTEGRITY_KEY_SUFFIX).read_text()


def test_tampered_format_1_gallery_is_not_upgraded(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(DATA / "gallery_v1_plain.db", path)
    raw = sqlite3.connect(path)
    vec = (np.eye(8, dtype="<f4")[0] * 1000).tobytes()
    raw.execute("UPDATE templates SET vector=? WHERE id=1", (vec,))
    raw.commit()
    raw.close()
    with pytest.raises(GalleryIntegrityError, match="not upgraded.*norm 1000"):
        Gallery(path, None)
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='format'").fetchone()[0] == FORMAT_V1


def test_downgraded_gallery_is_not_silently_upgraded(tmp_path):
    path = tmp_path / "g.db"
    hc.build(path, False)
    hc.TAMPER_CASES["downgrade the format"](path, False)
    with pytest.raises(GalleryError, match="downgraded"):
        Gallery(path, hc.MODEL)


def test_upgrade_interrupted_after_its_commit_is_finished_on_the_next_open(tmp_path, monkeypatch):
    import crres_sdk.gallery.store as gm  # where Gallery opens call _write_integrity_key

    path = tmp_path / "old.db"
    shutil.copy(DATA / "gallery_v1_plain.db", path)
    real = gm._write_integrity_key

    def die_after_commit(p, key, pending=False):
        if not pending:
            raise KeyboardInterrupt("killed after the upgrade committed")
        real(p, key, pending)

    monkeypatch.setattr(gm, "_write_integrity_key", die_after_commit)
    with pytest.raises(KeyboardInterrupt):
        Gallery(path, None)
    monkeypatch.undo()
    key_file = Path(str(path) + INTEGRITY_KEY_SUFFIX)
    assert "pending" in key_file.read_text()  # the marker survived the 'crash'
    with Gallery(path, None) as g:  # upgraded already: opens, and clears the marker
        assert g.check() == [] and list(g) == ["alice", "bobby"]
    assert "pending" not in key_file.read_text()
    hc.TAMPER_CASES["downgrade the format"](path, False)  # so a later downgrade is refused again
    with pytest.raises(GalleryError, match="downgraded"):
        Gallery(path, None)


@pytest.mark.parametrize("encrypted", MODES, ids=["plain", "encrypted"])
def test_every_write_keeps_the_gallery_sound(tmp_path, encrypted):
    """No false alarms: after each kind of write the row digest, head, MACs and chain all still verify."""
    from crres_sdk.gallery import ModelKey

    key = hc.KEY if encrypted else None
    E = hc.E
    steps = []
    with Gallery(tmp_path / "g.db", hc.MODEL, key=key, thumbnails=True) as g:
        def step(name):
            problems = g.check()
            steps.append((name, problems))
            assert problems == [], (name, problems)

        g.enroll("a", E[:2], [112, 14], source_hashes=["h", "h"], thumbnails=[b"png-a"], metadata={"k": 1})
        step("enroll")
        g.enroll("a", E[2:3], [28], metadata={"j": 2})
        step("append")
        g.enroll("b", E[3:4], [112], source_hashes=["hb"], thumbnails={"hb": b"png-b"})
        g.enroll("b", E[4:5], [112], replace=True)
        step("replace")
        g.rename("a", "c")
        step("rename")
        g.set_metadata("c", {"x": "y"})
        step("set_metadata")
        g.remove("b")
        step("remove")
        exported = g.export(tmp_path / "e.export")
        step("export")
        g.enroll("b", E[5:6], [112])
        g.import_(exported, on_conflict="merge")
        step("import merge")
        g.import_(exported, on_conflict="replace")
        step("import replace")

        def embed(name, items):
            return np.eye(4, dtype=np.float32)[:1], [112]

        g.reembed(ModelKey("test-model", "2", 4), embed, sources={"b": [1], "c": [2]})
        step("reembed")
    with Gallery(tmp_path / "g2.db", hc.MODEL, key=key) as g2:
        g2.enroll("z", E[:1], [112])
    with Gallery(tmp_path / "g2.db", hc.MODEL, key=key, thumbnails=True) as g2:
        assert g2.check() == []  # thumbnails turned on: a write at open
    assert len(steps) == 10
