"""`crres models list` shows each bundle and where it came from, and exits 1 with the fix when the default set is
incomplete; `crres models fetch` builds the detector bundle through crres_sdk.mtcnn_convert, or says why it cannot."""

from __future__ import annotations

import json
import sys
import types

from crres_sdk import bundle as bundle_module
from crres_sdk.cli import main
from tests.sdk.model_dirs import search_path, write_bundle, write_default_set  # noqa: F401  (fixture)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_complete_set_lists_each_origin_and_exits_0(search_path, capsys):
    write_bundle(search_path["package"] / "crres_default", "face-embedding")
    write_bundle(search_path["package"] / "resolution_estimator", "resolution-estimation")
    write_bundle(search_path["cache"] / "mtcnn", "face-detection")
    write_bundle(search_path["checkout"] / "crres_default", "face-embedding")  # shadowed by the package's
    code, out, err = run(capsys, "models", "list", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["complete"]
    origins = {r["name"]: (r["origin"], r["status"]) for r in report["default"]}
    assert origins == {"crres_default": ("package", "ok"), "mtcnn": ("user cache", "ok"),
                       "resolution_estimator": ("package", "ok")}
    [other] = report["other"]
    assert other["origin"] == "checkout" and other["shadowed_by"] == str(search_path["package"] / "crres_default")
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "user cache: " + str(search_path["cache"] / "mtcnn") in out and "shadowed by" in out


def test_missing_detector_exits_1_with_the_fixing_command(search_path, capsys, monkeypatch):
    monkeypatch.setattr(bundle_module, "in_checkout", lambda: False)  # as installed from the wheel
    write_default_set(search_path["package"], skip=("mtcnn",))
    code, out, err = run(capsys, "models", "list")
    assert code == 1
    assert "mtcnn" in out and "missing" in out
    assert "incomplete (mtcnn)" in err and "crres models fetch" in err


def test_corrupt_bundle_is_listed_invalid_and_fails_the_set(search_path, capsys):
    write_default_set(search_path["env"])
    (search_path["env"] / "resolution_estimator" / "model.onnx").write_bytes(b"tampered")
    code, out, err = run(capsys, "models", "list", "--json")
    assert code == 1
    row = next(r for r in json.loads(out)["default"] if r["name"] == "resolution_estimator")
    assert row["status"] == "invalid" and "sha256" in row["problem"] and row["origin"] == "$CRRES_MODELS"


def test_wrong_task_under_a_default_name_fails_the_set(search_path, capsys):
    write_default_set(search_path["env"], skip=("mtcnn",))
    write_bundle(search_path["env"] / "mtcnn", "face-embedding")
    code, out, _ = run(capsys, "models", "list", "--json")
    row = next(r for r in json.loads(out)["default"] if r["name"] == "mtcnn")
    assert code == 1 and row["status"] == "invalid" and "expected 'face-detection'" in row["problem"]


def test_fetch_without_the_converter_is_a_clear_error(search_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "crres_sdk.mtcnn_convert", None)  # as if the module were absent
    code, _, err = run(capsys, "models", "fetch")
    assert code == 1 and "no torch-free detector converter" in err and "Traceback" not in err
    assert not (search_path["cache"] / "mtcnn").exists()


def test_fetch_builds_into_the_user_cache_and_verifies(search_path, capsys, monkeypatch):
    calls = []

    def build_bundle(out_dir, wheel=None):
        calls.append((out_dir, wheel))
        return write_bundle(out_dir, "face-detection", name="mtcnn")

    converter = types.ModuleType("crres_sdk.mtcnn_convert")
    converter.build_bundle = build_bundle
    monkeypatch.setitem(sys.modules, "crres_sdk.mtcnn_convert", converter)
    code, out, _ = run(capsys, "models", "fetch")
    assert code == 0 and calls == [(search_path["cache"] / "mtcnn", None)] and "hashes verified" in out
    code, out, _ = run(capsys, "models", "fetch")  # a valid bundle is kept unless --force
    assert code == 0 and len(calls) == 1 and "already there" in out
    code, _, _ = run(capsys, "models", "fetch", "--force")
    assert code == 0 and len(calls) == 2
    code, _, err = run(capsys, "models", "fetch", "--dir", str(search_path["env"] / "x"), "--wheel", "/nonexistent.whl")
    assert code == 1 and "no such file" in err


def test_fetch_output_that_fails_its_hash_check_is_an_error(search_path, capsys, monkeypatch):
    def build_bundle(out_dir, wheel=None):
        write_bundle(out_dir, "face-detection")
        (out_dir / "model.onnx").write_bytes(b"truncated")
        return out_dir

    converter = types.ModuleType("crres_sdk.mtcnn_convert")
    converter.build_bundle = build_bundle
    monkeypatch.setitem(sys.modules, "crres_sdk.mtcnn_convert", converter)
    code, _, err = run(capsys, "models", "fetch")
    assert code == 1 and "sha256" in err


def test_info_by_name_uses_the_search_path(search_path, capsys):
    write_bundle(search_path["cache"] / "resolution_estimator", "resolution-estimation")
    code, out, _ = run(capsys, "models", "info", "resolution_estimator", "--json")
    assert code == 0 and json.loads(out)["task"] == "resolution-estimation"
    code, _, err = run(capsys, "models", "info", "no_such_model")
    assert code == 1 and "no bundle named 'no_such_model'" in err
