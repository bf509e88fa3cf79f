"""The SDK gallery: resolution-level matching and fusion math, privacy (secure delete, encryption, audit), export/
import, re-embedding, threads and processes, and crash safety (a SIGKILLed enrolment is never half visible)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crres_sdk.errors import BackendUnavailableError
from crres_sdk.gallery import (
    FAISS_MIN_PROBES,
    FAISS_MIN_TEMPLATES,
    FORMAT,
    DuplicateIdentity,
    Gallery,
    GalleryError,
    GalleryKeyError,
    GalleryModelMismatch,
    Match,
    ModelKey,
    UnknownIdentity,
    auto_backend,
    generate_key,
    resolution_level,
    write_key_file,
)
from tests import gallery_crash_worker as worker

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("gallery_crash_worker.py")

D = 8
MODEL = ModelKey("test-model", "1", D)
E = np.eye(D, dtype=np.float32)


def unit(*pairs: tuple[int, float]) -> np.ndarray:
    """A unit vector with the given (axis, value) components; the last pair's value is set to close the norm."""
    v = np.zeros(D, np.float64)
    for axis, value in pairs[:-1]:
        v[axis] = value
    v[pairs[-1][0]] = math.sqrt(1.0 - float(np.sum(v ** 2)))
    return v.astype(np.float32)


def rand_unit(rng: np.random.Generator, n: int, dim: int = D) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.fixture
def gallery(tmp_path):
    g = Gallery(tmp_path / "g.db", MODEL)
    yield g
    g.close()


def has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


needs_crypto = pytest.mark.skipif(not has_module("cryptography"), reason="pip install 'crres[crypto]'")
needs_faiss = pytest.mark.skipif(not has_module("faiss"), reason="pip install 'crres[faiss]'")


# ------------------------------------------------------------------------------------------------ matching math


def test_smax_and_sadd_fusion_by_hand(gallery):
    # Probe e0. At level 14, A's cosines are 0.8 and 0.2 (S_max 0.8, S_add 0.5); B's are 0.6 and 0.55
    # (S_max 0.6, S_add 0.575): max ranks A first, add ranks B first. At 112: A 0.1, B 0.9.
    gallery.enroll("A", [unit((0, 0.8), (1, 0)), unit((0, 0.2), (2, 0)), unit((0, 0.1), (3, 0))], [14, 14, 112])
    gallery.enroll("B", [unit((0, 0.6), (4, 0)), unit((0, 0.55), (5, 0)), unit((0, 0.9), (6, 0))], [14, 14, 112])
    smax = gallery.search(E[0], [14])[0]
    assert [(m.identity, round(m.score, 6), m.template_resolution) for m in smax] == [("A", 0.8, 14.0),
                                                                                      ("B", 0.6, 14.0)]
    sadd = gallery.search(E[0], [14], fusion="add")[0]
    assert [(m.identity, round(m.score, 6)) for m in sadd] == [("B", 0.575), ("A", 0.5)]
    hr = gallery.search(E[0], [112])[0]  # only the 112 templates count at HR
    assert [(m.identity, round(m.score, 6), m.template_resolution) for m in hr] == [("B", 0.9, 112.0),
                                                                                    ("A", 0.1, 112.0)]
    assert gallery.search(E[0])[0] == hr  # no resolution given: HR probe
    every = gallery.search(E[0], [14], fusion="add", match="all")[0]  # all three templates of each
    assert [(m.identity, round(m.score, 6)) for m in every] == [("B", round((0.6 + 0.55 + 0.9) / 3, 6)),
                                                                ("A", round((0.8 + 0.2 + 0.1) / 3, 6))]


@pytest.mark.parametrize(("r", "level"), [(1, 7.0), (7, 7.0), (9, 7.0), (9.8, 7.0), (math.sqrt(7 * 14), 14.0),
                                          (10, 14.0), (19, 14.0), (20, 28.0), (50, 28.0), (57, 112.0),
                                          (112, 112.0), (400, 112.0)])
def test_probe_is_compared_with_the_level_nearest_in_log_resolution(gallery, r, level):
    # One template per level, each on its own axis, so the score says which level was used.
    levels = [7, 14, 28, 112]
    gallery.enroll("A", E[:4], levels)
    probe = E[levels.index(int(level))]
    (m,) = gallery.search(probe, [r])[0]
    assert (m.template_resolution, round(m.score, 6)) == (level, 1.0)
    # |log 28 - log 56| = |log 112 - log 56|: the tie at 56 goes to the higher level, as at sqrt(7*14) above.
    assert math.isclose(abs(math.log(28 / 56)), abs(math.log(112 / 56)))


def test_each_identity_uses_its_own_nearest_level(gallery):
    gallery.enroll("full", E[:2], [7, 112])
    gallery.enroll("hr-only", E[2:3], [112])
    gallery.enroll("mid-only", E[3:4], [28])
    res = {m.identity: m.template_resolution for m in gallery.search(np.ones(D, np.float32), [8])[0]}
    assert res == {"full": 7.0, "hr-only": 112.0, "mid-only": 28.0}


def test_resolution_levels_round_and_cap_at_hr():
    assert resolution_level([150.0, 112.4, 13.6, 6.5, 0.7]).tolist() == [112.0, 112.0, 14.0, 6.0, 1.0]


def test_top_k_order_matches_brute_force(gallery):
    rng = np.random.default_rng(0)
    vecs = {f"id{i:02d}": rand_unit(rng, 3) for i in range(20)}
    for name, v in vecs.items():
        gallery.enroll(name, v, [112, 112, 112])
    probes = rand_unit(rng, 4)
    for fusion, fuse in (("max", np.max), ("add", np.mean)):
        got = gallery.search(probes, [112] * 4, top_k=5, fusion=fusion)
        for p, matches in zip(probes, got):
            want = sorted(((float(fuse(v @ p)), n) for n, v in vecs.items()), reverse=True)[:5]
            assert [m.identity for m in matches] == [n for _, n in want]
            assert np.allclose([m.score for m in matches], [s for s, _ in want], atol=1e-6)
    assert len(gallery.search(probes[0], top_k=100)[0]) == 20  # fewer identities than top_k: all of them


def test_probes_are_normalised_and_empty_gallery_returns_nothing(gallery):
    assert gallery.search(np.stack([E[0], E[1]]), [112, 7]) == [[], []]
    gallery.enroll("A", E[0], [112])
    (m,) = gallery.search(5.0 * E[0], [112])[0]
    assert m.score == pytest.approx(1.0)


@needs_faiss
def test_faiss_backend_gives_the_numpy_results(tmp_path):
    rng = np.random.default_rng(1)
    with Gallery(tmp_path / "g.db", ModelKey("m", "1", 32)) as g:
        for i in range(60):
            levels = [112, 28, 7] if i % 3 else [112]  # a third of the identities lack the degraded levels
            g.enroll(f"id{i}", rand_unit(rng, 2 * len(levels), 32), levels * 2)
        probes, res = rand_unit(rng, 6, 32), [112, 90, 30, 20, 8, 5]
        for match in ("nearest", "all"):
            a = g.search(probes, res, top_k=7, match=match, backend="numpy")
            b = g.search(probes, res, top_k=7, match=match, backend="faiss")
            for ma, mb in zip(a, b):
                assert [m.identity for m in ma] == [m.identity for m in mb]
                assert np.allclose([m.score for m in ma], [m.score for m in mb], atol=1e-5)
                assert [m.template_resolution for m in ma] == pytest.approx([m.template_resolution for m in mb],
                                                                            nan_ok=True)
        assert g.backend_for("max", "faiss") == "faiss" and g.backend_for("add", "faiss") == "numpy"
        assert g.backend_for("max", n_probes=100) == "numpy"  # 'auto' on a small gallery


def test_auto_backend_rule(monkeypatch, tmp_path):
    import crres_sdk.gallery.index as gallery_module  # where auto_backend reads FAISS_MIN_TEMPLATES

    assert auto_backend(FAISS_MIN_TEMPLATES, FAISS_MIN_PROBES) == "faiss"
    assert auto_backend(FAISS_MIN_TEMPLATES - 1, 10 * FAISS_MIN_PROBES) == "numpy"
    assert auto_backend(10 * FAISS_MIN_TEMPLATES, FAISS_MIN_PROBES - 1) == "numpy"
    if has_module("faiss"):
        monkeypatch.setattr(gallery_module, "FAISS_MIN_TEMPLATES", 2)
        with Gallery(tmp_path / "g.db", MODEL) as g:  # pretend thresholds on a small gallery
            g.enroll("A", E[:2], [112, 112])
            assert g.backend_for("max", n_probes=FAISS_MIN_PROBES) == "faiss"
            assert g.backend_for("max", n_probes=1) == "numpy" and g.backend_for("add", n_probes=99) == "numpy"


def test_faiss_backend_missing_is_a_clear_error(tmp_path):
    script = ("import sys; sys.modules['faiss'] = None\n"
              "from crres_sdk.gallery import Gallery, ModelKey\n"
              "try:\n    Gallery(sys.argv[1], ModelKey('m', '1', 4), backend='faiss')\n"
              "except ImportError as e:\n    print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "g.db")], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "BackendUnavailableError" in done.stdout and "pip install 'crres[faiss]'" in done.stdout
    assert issubclass(BackendUnavailableError, ImportError)


# ------------------------------------------------------------------------------------------------ writes


def test_enroll_appends_replaces_and_lists(gallery):
    assert gallery.enroll("A", E[:2], [112, 14], source_hashes=["h1", "h1"], metadata={"team": "x"}) == 2
    assert gallery.enroll("A", E[2:3], [28], metadata={"badge": 7}) == 1  # appended, metadata merged
    (info,) = gallery.identities()
    assert (info.name, info.n_templates, info.resolutions) == ("A", 3, (14.0, 28.0, 112.0))
    assert info.metadata == {"team": "x", "badge": 7} and info.updated >= info.created
    assert [(r.identity, r.resolution, r.source_hash) for r in gallery.templates("A")] == [
        ("A", 112.0, "h1"), ("A", 14.0, "h1"), ("A", 28.0, None)]
    assert np.array_equal(np.stack([r.vector for r in gallery.templates()]), E[:3])
    gallery.enroll("A", E[5:6], [112], replace=True)
    assert gallery.get("A").n_templates == 1 and gallery.get("A").metadata == {}
    assert "A" in gallery and "B" not in gallery and len(gallery) == 1 and gallery.n_templates == 1
    assert [e.action for e in gallery.audit_log()] == ["create", "enroll", "enroll", "replace"]
    assert [e.count for e in gallery.audit_log()] == [0, 2, 1, 1]


def test_templates_by_identity_groups_every_template_and_is_rebuilt_only_after_a_write(gallery):
    assert gallery.templates_by_identity() == {}
    gallery.enroll("B", E[:3], [112, 14.4, 200])
    gallery.enroll("A", E[3:5], [7, 112])
    view = gallery.templates_by_identity()
    assert sorted(view) == ["A", "B"]
    for name in view:  # the same vectors and raw resolutions (not levels) as templates(), in any order
        vectors, resolutions = view[name]
        rows = sorted(gallery.templates(name), key=lambda r: r.resolution)
        order = np.argsort(resolutions, kind="stable")
        assert np.array_equal(resolutions[order], [r.resolution for r in rows])
        assert np.array_equal(vectors[order], np.stack([r.vector for r in rows]))
        assert vectors.dtype == np.float32 and not vectors.flags.writeable and not resolutions.flags.writeable
    assert gallery.templates_by_identity() is view  # cached for the generation
    gallery.remove("A")
    assert sorted(gallery.templates_by_identity()) == ["B"]


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"templates": np.ones((1, D + 1)) / math.sqrt(D + 1)}, ValueError, "dimension 9"),
    ({"templates": np.full((1, D), np.nan)}, ValueError, "NaN"),
    ({"templates": np.ones((1, D))}, ValueError, "L2-normalised"),
    ({"templates": np.zeros((0, D))}, ValueError, "N >= 1"),
    ({"templates": np.array([["a"] * D])}, TypeError, "numeric"),
    ({"resolutions": [0.5]}, ValueError, ">= 1 px"),
    ({"resolutions": [112, 14]}, ValueError, "2 values for 1"),
    ({"name": ""}, ValueError, "non-empty"),
    ({"name": " A"}, ValueError, "spaces"),
    ({"name": 3}, TypeError, "string"),
    ({"source_hashes": "abc"}, TypeError, "not a string"),
    ({"metadata": {"x": float("nan")}}, ValueError, "JSON"),
    ({"metadata": [1]}, TypeError, "dict"),
    ({"thumbnails": [b"png"], "source_hashes": ["h"]}, GalleryError, "thumbnails=True"),
])
def test_bad_enrolments_are_clear_errors_and_write_nothing(gallery, kwargs, error, text):
    args = {"name": "A", "templates": E[:1], "resolutions": [112]} | kwargs
    with pytest.raises(error, match=text):
        gallery.enroll(args.pop("name"), args.pop("templates"), args.pop("resolutions"), **args)
    assert len(gallery) == 0 and [e.action for e in gallery.audit_log()] == ["create"]
    assert gallery.enroll("A", 3 * E[:1], [112], normalize=True) == 1  # normalize=True accepts raw vectors


@pytest.mark.parametrize("name", ["\u202eecila", "ali\u200bce", "al\u200dice", "\ufeffalice", "a\u2066lice\u2069",
                                  "ali\u00adce", "al\tice", "alice\nbob", "al\x7fice", "al\u2028ice",
                                  "al\ue000ice", "al\u0378ice", "al\u00a0ice", "al\u200fice"])
def test_names_that_display_as_something_else_are_refused(gallery, name):
    with pytest.raises(ValueError, match=r"U\+[0-9A-F]{4}") as err:
        gallery.enroll(name, E[:1], [112])
    assert "position" in str(err.value)
    assert len(gallery) == 0 and name not in gallery
    with pytest.raises(ValueError, match=r"U\+"):
        gallery.rename("x", name)


def test_names_are_nfc_normalised(gallery):
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    gallery.enroll(decomposed, E[:1], [112])
    assert list(gallery) == [composed] and composed in gallery and decomposed in gallery
    gallery.enroll(composed, E[1:2], [112])  # the same identity, appended to
    assert gallery.get(decomposed).n_templates == 2 and len(gallery) == 1
    gallery.enroll("\u674e\u5c0f\u9f99 \u00c5sa-\u00d8ye O'Brien", E[2:3], [112])  # ordinary text is fine
    assert gallery.search(E[0])[0][0].identity == composed


def test_remove_really_deletes_with_secure_delete(tmp_path):
    path = tmp_path / "g.db"
    secret = unit((0, 0.123456789), (1, 0.987654321 * 0.5), (2, 0))
    with Gallery(path, MODEL) as g:
        for conn in (g._writer, g._reader_checkout()):
            assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        g.enroll("keep", E[:1], [112])
        g.enroll("gone", secret, [112])
        assert secret.tobytes() in db_bytes(path)  # positive control: the vector is on disk
        assert g.remove("gone") == 1
        assert "gone" not in g and [m.identity for m in g.search(secret)[0]] == ["keep"]
        assert secret.tobytes() not in db_bytes(path)  # overwritten in the file and not left in the WAL
        with pytest.raises(UnknownIdentity, match="'gone'"):
            g.remove("gone")
        assert g.audit_log()[-1][1:4] == ("remove", "gone", 1)


def test_rename(gallery):
    gallery.enroll("A", E[:2], [112, 7])
    gallery.enroll("B", E[2:3], [112])
    gallery.rename("A", "C")
    assert list(gallery) == ["B", "C"] and gallery.get("C").n_templates == 2
    assert gallery.search(E[0])[0][0].identity == "C"
    with pytest.raises(DuplicateIdentity, match="'B' already exists"):
        gallery.rename("C", "B")
    with pytest.raises(UnknownIdentity):
        gallery.rename("A", "D")
    assert gallery.audit_log()[-1].action == "rename" and json.loads(gallery.audit_log()[-1].detail) == {"new": "C"}


def test_audit_log_is_append_only_and_tamper_evident(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path, MODEL) as g:
        g.enroll("A", E[:1], [112])
        g.remove("A")
        assert g.check() == []
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit SET identity='someone else'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit WHERE action='remove'")
    raw.execute("DROP TRIGGER audit_no_delete")  # someone with file access goes around the triggers...
    raw.execute("DELETE FROM audit WHERE action='enroll'")
    raw.commit()
    raw.close()
    with Gallery(path, MODEL) as g:
        assert [e.action for e in g.audit_log()] == ["create", "remove"]
        assert any("keyed chain broken" in p for p in g.check())  # ...and the chain shows it


def test_model_binding(tmp_path):
    path = tmp_path / "g.db"
    Gallery(path, MODEL).close()
    for other in (ModelKey("other", "1", D), ModelKey("test-model", "2", D), ModelKey("test-model", "1", 16)):
        with pytest.raises(GalleryModelMismatch) as err:
            Gallery(path, other)
        assert str(MODEL) in str(err.value) and str(other) in str(err.value)
    with Gallery(path, None) as g:  # open with whatever model it is bound to
        assert g.model == MODEL
        with pytest.raises(ValueError, match="dimension 16"):
            g.search(np.ones(16, np.float32))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        ModelKey("m", "1", 0)
    assert ModelKey.from_manifest({"name": "m", "version": "2", "embedding_dim": 512}) == ModelKey("m", "2", 512)


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Gallery(tmp_path / "missing.db", MODEL, create=False)
    with pytest.raises(ValueError, match="needs a file path"):
        Gallery(":memory:", MODEL)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(GalleryError, match="cannot be opened as a gallery"):
        Gallery(junk, MODEL)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE people (name TEXT)").connection.commit()
    with pytest.raises(GalleryError, match="not a crres gallery"):
        Gallery(other, MODEL)
    path = tmp_path / "g.db"
    with Gallery(path, MODEL) as g:
        g.enroll("A", E[:1], [112])
    with Gallery(path, MODEL, readonly=True) as ro:
        assert list(ro) == ["A"] and ro.search(E[0])[0][0].identity == "A"
        with pytest.raises(GalleryError, match="read-only"):
            ro.enroll("B", E[:1], [112])
    g = Gallery(path, MODEL)
    g.close()
    with pytest.raises(GalleryError, match="closed"):
        g.search(E[0])
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='format'").fetchone()[0] == FORMAT


# ------------------------------------------------------------------------------------------------ encryption


@needs_crypto
def test_encryption_roundtrip_and_keys(tmp_path, monkeypatch):
    path = tmp_path / "enc.db"
    key = generate_key()
    secret = unit((0, 0.31415926), (1, 0.27182818), (2, 0))
    with Gallery(path, MODEL, key=key) as g:
        assert g.encrypted
        g.enroll("A", np.stack([secret, E[3]]), [112, 14], metadata={"employee": "Z-99-SECRET"})
        (m,) = g.search(secret, [112])[0]
        assert (m.identity, round(m.score, 6)) == ("A", 1.0)
        assert np.array_equal(next(g.templates("A")).vector, secret)
        g.rename("A", "B")  # the name is in the associated data: rename re-seals the templates
        assert g.get("B").metadata == {"employee": "Z-99-SECRET"} and g.check() == []
    stored = db_bytes(path)
    assert secret.tobytes() not in stored and E[3].tobytes() not in stored and b"Z-99-SECRET" not in stored
    raw = sqlite3.connect(path)
    blob, nonce = raw.execute("SELECT vector, nonce FROM templates ORDER BY id LIMIT 1").fetchone()
    assert len(nonce) == 12 and len(blob) == 4 * D + 16  # AES-GCM: ciphertext + 16-byte tag
    raw.close()

    with pytest.raises(GalleryKeyError, match="encrypted: pass its key"):
        Gallery(path, MODEL)
    with pytest.raises(GalleryKeyError, match="wrong key"):
        Gallery(path, MODEL, key=generate_key())
    with pytest.raises(GalleryKeyError, match="32 bytes"):
        Gallery(path, MODEL, key=b"short")
    with pytest.raises(ValueError, match="at most one"):
        Gallery(path, MODEL, key=key, key_env="X")
    key_file = tmp_path / "gallery.key"
    write_key_file(key_file, key)
    assert key_file.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("CRRES_TEST_GALLERY_KEY", key.hex())
    monkeypatch.delenv("CRRES_TEST_UNSET_KEY", raising=False)
    for kwargs in ({"key_file": key_file}, {"key_env": "CRRES_TEST_GALLERY_KEY"}):
        with Gallery(path, MODEL, **kwargs) as g:
            assert list(g) == ["B"]
    with pytest.raises(GalleryKeyError, match="not set"):
        Gallery(path, MODEL, key_env="CRRES_TEST_UNSET_KEY")
    plain = tmp_path / "plain.db"
    Gallery(plain, MODEL).close()
    with pytest.raises(GalleryKeyError, match="not encrypted"):
        Gallery(plain, MODEL, key=key)


@needs_crypto
def test_swapped_ciphertext_rows_fail_authentication(tmp_path):
    path = tmp_path / "enc.db"
    key = generate_key()
    with Gallery(path, MODEL, key=key) as g:
        g.enroll("A", E[:1], [112])
        g.enroll("B", E[1:2], [112])
    raw = sqlite3.connect(path)  # give B's template A's sealed vector (a valid ciphertext under the same key)
    va, na = raw.execute("SELECT vector, nonce FROM templates WHERE id=1").fetchone()
    raw.execute("UPDATE templates SET vector=?, nonce=? WHERE id=2", (va, na))
    raw.commit()
    raw.close()
    with Gallery(path, MODEL, key=key) as g:
        with pytest.raises(GalleryKeyError, match="template 2 of 'B' fails authentication"):
            g.search(E[0])
        assert any("template 2" in p for p in g.check())


def test_missing_cryptography_is_a_clear_error(tmp_path):
    script = ("import sys; sys.modules['cryptography'] = None\n"
              "from crres_sdk.gallery import Gallery, ModelKey\n"
              "try:\n    Gallery(sys.argv[1], ModelKey('m', '1', 4), key=bytes(32))\n"
              "except ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "g.db")], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'crres[crypto]'" in done.stdout


# ------------------------------------------------------------------------------------------------ export/import


def test_export_import_roundtrip_and_conflicts(tmp_path):
    a = Gallery(tmp_path / "a.db", MODEL)
    a.enroll("X", E[:2], [112, 14], metadata={"k": 1})
    a.enroll("Y", E[2:3], [112])
    exported = a.export(tmp_path / "a.export")
    with pytest.raises(FileExistsError):
        a.export(exported)
    assert a.audit_log()[-1][1:4] == ("export", None, 3)

    b = Gallery(tmp_path / "b.db", MODEL)
    b.enroll("Y", E[7:8], [112])
    with pytest.raises(DuplicateIdentity, match="Y"):
        b.import_(exported, on_conflict="error")
    assert list(b) == ["Y"]  # nothing imported
    assert b.import_(exported) == {"imported": 1, "skipped": 1, "replaced": 0, "merged": 0, "templates": 2,
                                   "thumbnails_dropped": 0}
    assert b.get("X").metadata == {"k": 1} and b.get("Y").n_templates == 1
    assert np.array_equal(np.stack([r.vector for r in b.templates("X")]), E[:2])
    assert [(m.identity, m.template_resolution) for m in b.search(E[1], [14])[0]][:1] == [("X", 14.0)]
    b.import_(exported, on_conflict="merge")
    assert b.get("Y").n_templates == 2 and b.get("X").n_templates == 4
    b.import_(exported, on_conflict="replace")
    assert b.get("Y").n_templates == 1 and b.search(E[2])[0][0].identity == "Y"
    assert [e.action for e in b.audit_log()].count("import") == 1 + 2 + 2
    with pytest.raises(ValueError, match="on_conflict"):
        b.import_(exported, on_conflict="overwrite")

    c = Gallery(tmp_path / "c.db", ModelKey("another", "1", D))
    with pytest.raises(GalleryModelMismatch, match="another"):
        c.import_(exported)
    for g in (a, b, c):
        g.close()


@needs_crypto
def test_encrypted_export_stays_encrypted_unless_asked(tmp_path):
    key = generate_key()
    secret = unit((0, 0.4242), (1, 0.1717), (2, 0))
    with Gallery(tmp_path / "enc.db", MODEL, key=key) as g:
        g.enroll("A", secret, [112])
        sealed = g.export(tmp_path / "sealed.export")
        opened = g.export(tmp_path / "open.export", decrypt=True)
        assert [e.action for e in g.audit_log()][-2:] == ["export", "export-decrypted"]
    assert secret.tobytes() not in db_bytes(sealed) and secret.tobytes() in db_bytes(opened)
    with pytest.raises(GalleryKeyError):
        Gallery(sealed, MODEL, readonly=True)
    with Gallery(opened, MODEL, readonly=True) as plain:
        assert not plain.encrypted and np.array_equal(next(plain.templates()).vector, secret)
    key2 = generate_key()
    with Gallery(tmp_path / "other.db", MODEL, key=key2) as other:
        with pytest.raises(GalleryKeyError, match="wrong key"):
            other.import_(sealed)  # defaults to its own key
        assert other.import_(sealed, key=key)["imported"] == 1  # re-sealed under key2
        assert other.import_(opened, on_conflict="replace")["replaced"] == 1
        assert other.check() == [] and other.search(secret)[0][0].identity == "A"
    assert secret.tobytes() not in db_bytes(tmp_path / "other.db")


# ------------------------------------------------------------------------------------------------ re-embedding


def test_reembed_from_thumbnails_and_from_supplied_sources(tmp_path):
    path = tmp_path / "g.db"
    new_model = ModelKey("test-model", "2", 4)

    def embed(name, items):  # a stand-in "model": a fixed function of the source bytes
        vecs = [np.frombuffer((item.image if hasattr(item, "image") else item)[:16], np.float32) for item in items]
        vecs = np.stack(vecs) / np.linalg.norm(np.stack(vecs), axis=1, keepdims=True)
        return vecs, [112] * len(vecs)

    img = {n: np.array(v, np.float32).tobytes() + b"PNG" for n, v in (("A", [1, 2, 3, 4]), ("B", [4, 3, 2, 1]))}
    with Gallery(path, MODEL) as plain:
        plain.enroll("A", E[:1], [112])
        with pytest.raises(GalleryError, match="stores no face images"):
            plain.reembed(new_model, embed)
        with pytest.raises(GalleryError, match="thumbnails=True"):
            plain.enroll("A", E[:1], [112], source_hashes=["h"], thumbnails=[img["A"]])
    with Gallery(path, MODEL, thumbnails=True) as g:
        assert g.stores_thumbnails and g.audit_log()[-1].action == "thumbnails-on"
        g.enroll("A", E[1:3], [112, 14], source_hashes=["ha", "ha"], thumbnails={"ha": img["A"]})
        g.enroll("B", E[3:4], [112], source_hashes=["hb"], thumbnails=[img["B"]])
        assert [s.image for s in g.thumbnails("A")] == [img["A"]]
        stale = Gallery(path, MODEL)  # another handle still bound to the old model
        summary = g.reembed(new_model, embed)
        assert summary["templates"] == 2 and g.model == new_model
        assert g.get("A").n_templates == 1 and g.search(np.array([1, 2, 3, 4], np.float32))[0][0].identity == "A"
        assert g.audit_log()[-1].action == "reembed"
        with pytest.raises(GalleryModelMismatch, match="re-embedded"):
            stale.search(E[0])
        stale.close()
        # Caller-supplied sources; identities without any: refused unless missing="remove".
        srcs = {"A": [np.array([0, 0, 1, 1], np.float32).tobytes()]}
        with pytest.raises(GalleryError, match="no source material for 1 identities"):
            g.reembed(MODEL.__class__("test-model", "3", 4), embed, sources=srcs)
        g.reembed(ModelKey("test-model", "3", 4), embed, sources=srcs, missing="remove")
        assert list(g) == ["A"] and g.audit_log()[-2][1:3] == ("remove", "B")
    with pytest.raises(GalleryModelMismatch):
        Gallery(path, MODEL)


# ------------------------------------------------------------------------------------------------ concurrency


def test_reader_threads_never_see_partial_enrolments(gallery):
    # Every identity gets two templates at level 112: one equal to the probe (cos 1) and one orthogonal (cos 0),
    # so its S_add is 0.5 when whole and 1.0 or 0.0 if only half were visible.
    probe = E[0]
    n_ident, errors, seen = 40, [], []
    stop = threading.Event()

    def reader():
        try:
            last = 0
            while not stop.is_set():
                found = gallery.search(probe, [112], top_k=1000, fusion="add")[0]
                assert all(abs(m.score - 0.5) < 1e-6 for m in found), [m.score for m in found]
                assert len(found) >= last  # commits only add identities here
                last = len(found)
                seen.append(len(found))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(n_ident):
        gallery.enroll(f"p{i}", np.stack([probe, E[1 + i % (D - 1)]]), [112, 112])
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[0]
    assert len(seen) > 10 and max(seen) == n_ident and min(seen) < n_ident  # searches overlapped the writes


def _serve(path: Path, dim: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(WORKER), "serve", str(path), str(dim)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _ask(proc: subprocess.Popen, line: str) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_two_processes_see_each_others_commits(tmp_path):
    path, dim = tmp_path / "g.db", 16
    with Gallery(path, worker.model(dim)) as g:
        g.enroll("mine", worker.vectors(7, 2, dim), [112, 14])
        proc = _serve(path, dim)
        try:
            assert g.search(worker.vectors(5, 1, dim))[0][0].identity == "mine"  # cache built before their write
            assert _ask(proc, "enroll theirs 5") == "ok 2"
            best = g.search(worker.vectors(5, 1, dim), [112], top_k=1)[0][0]
            assert (best.identity, round(best.score, 5)) == ("theirs", round(float(
                worker.vectors(5, 2, dim)[0] @ worker.vectors(5, 1, dim)[0]), 5))
            assert json.loads(_ask(proc, "names")) == ["mine", "theirs"]
            g.remove("mine")
            g.enroll("new", worker.vectors(9, 2, dim), [112, 14])
            assert json.loads(_ask(proc, "names")) == ["new", "theirs"]
            assert json.loads(_ask(proc, "search 9"))[0] == "new"
            assert _ask(proc, "remove theirs") == "ok 2"
            assert [m.identity for m in g.search(worker.vectors(5, 1, dim))[0]] == ["new"]
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    assert proc.returncode == 0


uncommitted_wal_frames = worker.uncommitted_wal_frames


def test_sigkill_during_enrolment_leaves_only_whole_enrolments(tmp_path):
    # Each enrolment is ~2.4 MB (1200 x 512-d), more than SQLite's page cache, so pages spill to the WAL before
    # the commit. The worker says the moment pages of its third enrolment are in the WAL file and stops there,
    # inside the transaction; the kill lands then, on an idle or a loaded machine alike. Reopening must show
    # only whole enrolments, every acknowledged one, and a sound gallery.
    path, dim, k = tmp_path / "crash.db", 512, 1200
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, str(WORKER), "loop", str(path), str(dim), str(k), "2"],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        lines: list[str] = []
        try:
            while not (lines and lines[-1].startswith("spilled")):
                line = proc.stdout.readline()
                assert line, f"worker exited early: {lines}"
                lines.append(line.strip())
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        lines += proc.stdout.read().splitlines()
        assert lines[-2:] == [f"begin {lines[-1].split()[1]}", lines[-1]]  # killed inside that enrolment
        assert uncommitted_wal_frames(Path(f"{path}-wal")) > 0  # with its uncommitted pages on disk

        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.close()
        with Gallery(path, worker.model(dim)) as g:
            infos = g.identities()
            names = {i.name for i in infos}
            assert {"p" + x.split()[1] for x in lines if x.startswith("done")} <= names  # acknowledged ones kept
            assert f"p{lines[-1].split()[1]}" not in names  # the killed one left nothing
            assert names == {f"p{i}" for i in range(len(infos))}  # no gaps, no extras
            assert len(infos) == 2 * (attempt + 1)
            assert all(i.n_templates == k for i in infos), [(i.name, i.n_templates) for i in infos]  # none partial
            assert [e.identity for e in g.audit_log() if e.action == "enroll"] == [f"p{i}" for i in range(len(infos))]
            assert g.check() == []
            top = g.search(worker.vectors(len(infos) - 1, 1, dim), [112], top_k=1)[0][0]
            assert (top.identity, round(top.score, 5)) == (f"p{len(infos) - 1}", 1.0)


def test_benchmark_json(tmp_path):
    out = tmp_path / "gallery.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gallery", "--json", str(out), "--sizes",
                           "500", "--db-sizes", "100", "--dim", "32", "--repeats", "3", "--threads", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    keys = {"benchmark", "case", "impl", "threads", "median_s", "p90_s", "baseline", "speedup_vs_baseline", "extra"}
    assert all(set(r) == keys and r["median_s"] > 0 for r in records)
    search = [r for r in records if r["benchmark"] == "gallery_search"]
    assert {r["impl"] for r in search} >= {"numpy", "numpy_all"} and {r["extra"]["probes"] for r in search} == {1, 16}
    for r in search:
        if r["baseline"]:
            base = next(b for b in search if b["case"] == r["case"] and b["impl"] == r["baseline"])
            assert r["speedup_vs_baseline"] == pytest.approx(base["median_s"] / r["median_s"])
        if r["impl"] == "faiss":
            assert r["extra"]["same_top5_as_numpy"] is True
    assert {r["case"] for r in records if r["benchmark"] == "gallery_db"} == {"100 tpl enrol/identity",
                                                                             "100 tpl open+first search"}
