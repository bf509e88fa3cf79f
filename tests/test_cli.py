"""The `crres` command line, run as a user runs it (a subprocess), on a real face photo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from crres_sdk import BundleError
from crres_sdk.recognizer import find_model_bundle
from tests.faces import astronaut_bgr


def crres(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crres_sdk.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_usage_errors_exit_2_with_a_message(tmp_path):
    r = crres("enroll", "--gallery", tmp_path / "g.db")
    assert r.returncode == 2 and "enroll needs NAME" in r.stderr
    r = crres("identify")
    assert r.returncode == 2 and "required" in r.stderr
    r = crres("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = crres("enroll", "--gallery", tmp_path / "g.db", "--folder", tmp_path / "nope")
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_runtime_errors_exit_1_without_a_traceback(tmp_path):
    r = crres("gallery", "list", "--gallery", tmp_path / "missing.db")
    assert r.returncode == 1 and "no gallery at" in r.stderr and "Traceback" not in r.stderr
    r = crres("models", "info", tmp_path)
    assert r.returncode == 1 and "not a model bundle" in r.stderr and "Traceback" not in r.stderr


def test_models_list_and_info_of_a_shipped_bundle():
    r = crres("models", "list")
    assert r.returncode == 0 and "resolution-estimator" in r.stdout
    r = crres("models", "info", "resolution_estimator", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["task"] == "resolution-estimation"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    try:
        find_model_bundle("default")
    except BundleError as exc:
        pytest.skip(f"no default model bundle: {exc}")
    root = tmp_path_factory.mktemp("cli")
    astro = astronaut_bgr()
    (root / "people" / "astronaut").mkdir(parents=True)
    cv2.imwrite(str(root / "people" / "astronaut" / "a.png"), astro)
    (root / "people" / "nobody").mkdir()
    cv2.imwrite(str(root / "people" / "nobody" / "grey.png"), astro[:100, :100] * 0 + 128)
    small = cv2.resize(astro, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "small.png"), small)
    (root / "corrupt.jpg").write_bytes(b"not a jpeg")
    return root


def test_enroll_identify_and_gallery_commands(photos, tmp_path):
    db = tmp_path / "g.db"
    r = crres("enroll", "--gallery", db, "--backend", "onnxruntime", "--folder", photos / "people")
    # One person has no face: reported, nothing stored for them, exit 1; the other is enrolled.
    assert r.returncode == 1 and "nobody: FAILED" in r.stderr and "astronaut: 1 image(s)" in r.stdout
    r = crres("identify", "--gallery", db, "--backend", "onnxruntime", photos / "small.png", "--json")
    assert r.returncode == 0, r.stderr
    faces = json.loads(r.stdout)["faces"]
    assert len(faces) == 1 and faces[0]["identity"] == "astronaut" and faces[0]["decision"] == "match"
    assert faces[0]["score"] > faces[0]["threshold"]
    assert faces[0]["pairing"] in ("hr", "matched")
    r = crres("identify", "--gallery", db, "--backend", "onnxruntime", "--pairing", "matched", photos / "small.png",
              "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["faces"][0]["pairing"] == "matched", r.stderr
    r = crres("identify", "--gallery", db, "--pairing", "best", photos / "small.png")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = crres("identify", "--gallery", db, photos / "corrupt.jpg")
    assert r.returncode == 1 and "not a readable image" in r.stderr
    r = crres("gallery", "list", "--gallery", db, "--json")
    listed = json.loads(r.stdout)
    assert [i["name"] for i in listed["identities"]] == ["astronaut"]
    r = crres("gallery", "export", "--gallery", db, tmp_path / "export.db")
    assert r.returncode == 0, r.stderr
    r = crres("gallery", "rename", "--gallery", db, "astronaut", "eileen")
    assert r.returncode == 0, r.stderr
    r = crres("gallery", "remove", "--gallery", db, "eileen")
    assert r.returncode == 0 and "securely deleted" in r.stdout
    r = crres("gallery", "remove", "--gallery", db, "eileen")
    assert r.returncode == 1 and "eileen" in r.stderr
    r = crres("gallery", "import", "--gallery", db, tmp_path / "export.db")
    assert r.returncode == 0, r.stderr
    r = crres("gallery", "audit", "--gallery", db, "--json")
    actions = [e["action"] for e in json.loads(r.stdout)]
    assert actions[:1] == ["create"] and "enroll" in actions and "remove" in actions and "rename" in actions
    r = crres("gallery", "check", "--gallery", db)
    assert r.returncode == 0 and r.stdout.strip() == "ok"


def test_verify_command(photos):
    r = crres("verify", "--backend", "onnxruntime", photos / "small.png", photos / "people" / "astronaut" / "a.png")
    assert r.returncode == 0 and "same person" in r.stdout, r.stdout + r.stderr
    r = crres("verify", photos / "small.png", photos / "people" / "nobody" / "grey.png")
    assert r.returncode == 1 and "no face" in r.stderr


def test_gallery_commands_on_an_old_a_tampered_and_a_moved_key_gallery(tmp_path):
    """Issue 19: a format-1 gallery is upgraded by the first command (said on stderr); tampering makes `check`
    list problems and exit 1; a key kept elsewhere is named with --integrity-key-file."""
    import shutil
    import sqlite3

    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).with_name("data") / "gallery_v1_plain.db", db)
    r = crres("gallery", "list", "--gallery", db)
    assert r.returncode == 0 and "upgraded gallery" in r.stderr and "alice" in r.stdout and "bobby" in r.stdout
    r = crres("gallery", "check", "--gallery", db)
    assert r.returncode == 0 and r.stdout.strip() == "ok"
    raw = sqlite3.connect(db)
    raw.execute("UPDATE templates SET resolution=7 WHERE id=1")
    raw.commit()
    raw.close()
    r = crres("gallery", "check", "--gallery", db, "--json")
    assert r.returncode == 1 and any("template 1 of 'alice'" in p for p in json.loads(r.stdout)["problems"])
    r = crres("gallery", "list", "--gallery", db)
    assert r.returncode == 1 and "fails its integrity check" in r.stderr and "Traceback" not in r.stderr
    moved = tmp_path / "vault.key"
    Path(f"{db}.integrity-key").rename(moved)
    r = crres("gallery", "audit", "--gallery", db)
    assert r.returncode == 1 and "integrity key" in r.stderr and "missing" in r.stderr
    r = crres("gallery", "audit", "--gallery", db, "--integrity-key-file", moved, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[-1]["action"] == "upgrade"


def test_photos_remove_photo_and_the_enrolment_minimum(photos, tmp_path):
    db = tmp_path / "g.db"
    astro = astronaut_bgr()
    second = tmp_path / "b.png"
    cv2.imwrite(str(second), cv2.flip(astro, 1))
    r = crres("enroll", "--gallery", db, "--backend", "onnxruntime", "eileen",
              photos / "people" / "astronaut" / "a.png", second)
    assert r.returncode == 0, r.stderr
    r = crres("gallery", "photos", "--gallery", db, "eileen", "--json")
    listed = json.loads(r.stdout)["photos"]
    assert r.returncode == 0 and len(listed) == 2 and all(p["templates"] >= 1 for p in listed)
    r = crres("gallery", "remove-photo", "--gallery", db, "eileen", second)
    assert r.returncode == 0 and "removed photo" in r.stdout, r.stderr
    left = json.loads(crres("gallery", "photos", "--gallery", db, "eileen", "--json").stdout)["photos"]
    assert [p["source_hash"] for p in left] == [listed[0]["source_hash"]]
    r = crres("gallery", "remove-photo", "--gallery", db, "eileen", left[0]["source_hash"][:10])
    assert r.returncode == 1 and "only photo" in r.stderr and "Traceback" not in r.stderr
    r = crres("gallery", "remove-photo", "--gallery", db, "eileen", second)
    assert r.returncode == 1 and str(second) in r.stderr and "no photo" in r.stderr
    # a face below the enrolment minimum is refused, naming the photo; --min-resolution 0 lifts it
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), cv2.resize(astro, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA))
    r = crres("enroll", "--gallery", db, "--backend", "onnxruntime", "--min-resolution", "100", "x", tiny)
    assert r.returncode == 1 and str(tiny) in r.stderr and "100 px enrolment minimum" in r.stderr, r.stderr
    assert "x" not in json.loads(crres("gallery", "list", "--gallery", db, "--json").stdout)["identities"]
    r = crres("gallery", "check", "--gallery", db)
    assert r.returncode == 0 and r.stdout.strip() == "ok"
