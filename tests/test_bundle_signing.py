"""Model bundles are checked, not trusted (issue 19 item 3): threshold ranges and monotonicity in the manifest,
Ed25519 signatures made at export (export/signing.py) and a pinned public key that refuses unsigned, re-signed
or altered bundles."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from crres_sdk.bundle import PUBLIC_KEY_ENV, SIGNATURE_FILE, load_bundle
from crres_sdk.errors import BundleError

pytest.importorskip("cryptography")
from export.signing import generate_keypair, main as signing_main, sign_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "models" / "resolution_estimator"  # a small shipped bundle to copy


def _copy(tmp_path: Path, src: Path = SMALL) -> Path:
    if not (src / "manifest.json").is_file():
        pytest.skip(f"no bundle at {src}")
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _with_thresholds(bundle: Path, thresholds: dict) -> Path:
    m = json.loads((bundle / "manifest.json").read_text())
    m["thresholds"] = thresholds
    (bundle / "manifest.json").write_text(json.dumps(m))
    return bundle


GOOD = {"metric": "cosine", "resolutions": [7, 14, 112], "far": {"1e-3": [0.45, 0.5, 0.52], "1e-4": [0.55, 0.6, 0.6]},
        "tar": {"1e-3": [0.1, 0.3, 0.4]}}


def test_shipped_manifests_pass_the_threshold_checks():
    for name in ("crres_default", "mtcnn", "resolution_estimator"):
        if (ROOT / "models" / name / "manifest.json").is_file():
            load_bundle(ROOT / "models" / name, verify=False)


@pytest.mark.parametrize(("change", "text"), [
    ({"far": {"1e-3": [-1.0, -1.0, -1.0]}}, r"must lie in \(0, 1\]"),                 # every face matches
    ({"far": {"1e-3": [0.45, 0.0, 0.52]}}, r"must lie in \(0, 1\]"),
    ({"far": {"1e-3": [0.45, 1.5, 0.52]}}, r"must lie in \(0, 1\]"),
    ({"far": {"1e-3": [0.45, float("nan"), 0.52]}}, r"must lie in \(0, 1\]"),
    ({"far": {"1e-3": [0.5, 0.5]}}, "one threshold per resolution"),
    ({"far": {"0.001x": [0.5, 0.5, 0.5]}}, "false-accept rate in"),
    ({"far": {"2": [0.5, 0.5, 0.5]}}, "false-accept rate in"),
    ({"far": {}}, "non-empty"),
    ({"far": {"1e-3": [0.5, 0.6, 0.6], "1e-4": [0.55, 0.5, 0.7]}}, "stricter false-accept rate"),  # not monotone
    ({"resolutions": [14, 7, 112]}, "strictly increasing"),
    ({"resolutions": [0, 14, 112]}, ">= 1"),
    ({"metric": "euclidean"}, "metric"),
    ({"tar": {"1e-3": [0.1, 1.3, 0.4]}}, "tar"),
    ({"by_file": {"onnx/int8": {"far": {"1e-3": [-1, -1, -1]}}}}, r"by_file.onnx/int8.far"),
])
def test_implausible_thresholds_are_refused(tmp_path, change, text):
    bundle = _with_thresholds(_copy(tmp_path), {**GOOD, **change})
    with pytest.raises(BundleError, match=text):
        load_bundle(bundle)


def test_plausible_thresholds_load(tmp_path):
    assert load_bundle(_with_thresholds(_copy(tmp_path), GOOD)).manifest["thresholds"]["far"]["1e-3"][0] == 0.45


@pytest.fixture
def keys(tmp_path):
    a = generate_keypair(tmp_path / "a.key", tmp_path / "a.pub")
    b = generate_keypair(tmp_path / "b.key", tmp_path / "b.pub")
    assert (tmp_path / "a.key").stat().st_mode & 0o077 == 0 and a != b
    return tmp_path


def test_signed_bundle_loads_with_its_pinned_key(keys, tmp_path, monkeypatch):
    bundle = _copy(tmp_path)
    sign_bundle(bundle, keys / "a.key")
    assert load_bundle(bundle, public_key=(keys / "a.pub").read_text().strip()).name == "resolution-estimator"
    assert load_bundle(bundle, public_key=keys / "a.pub").name == "resolution-estimator"  # a file works too
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(keys / "a.pub"))
    assert load_bundle(bundle).name == "resolution-estimator"
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(keys / "b.pub"))
    with pytest.raises(BundleError, match="not the pinned key"):
        load_bundle(bundle)


def test_without_a_pin_unsigned_bundles_still_load(tmp_path, monkeypatch):
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)
    assert load_bundle(_copy(tmp_path)).name == "resolution-estimator"


def _resign_with(bundle: Path, key: Path) -> None:
    sign_bundle(bundle, key)


def _swap_model_and_update_hash(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    target, roles = next(iter(m["files"].items()))
    role, entry = next(iter(roles.items()))
    f = bundle / entry["path"]
    f.write_bytes(f.read_bytes() + b"\0")  # another model, its sha256 updated in the manifest
    entry["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def _lower_thresholds(bundle: Path) -> None:
    """Thresholds lowered to 0.01: in range and monotone, so only the signature can tell."""
    m = json.loads((bundle / "manifest.json").read_text())
    m["thresholds"]["far"] = {k: [0.01] * len(v) for k, v in m["thresholds"]["far"].items()}
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


@pytest.mark.parametrize(("attack", "text"), [
    ("unsigned", "is not signed"),
    ("re-signed by another key", "not the pinned key"),
    ("re-signed, signer field forged", "does not verify"),
    ("model swapped, sha256 updated", "does not verify"),
    ("manifest edited after signing", "does not verify"),
    ("signature file garbled", "not a valid bundle signature"),
])
def test_pinned_key_refuses_unsigned_resigned_and_altered_bundles(keys, tmp_path, attack, text):
    bundle = _with_thresholds(_copy(tmp_path), GOOD)
    sign_bundle(bundle, keys / "a.key")
    pinned = (keys / "a.pub").read_text().strip()
    sig = bundle / SIGNATURE_FILE
    if attack == "unsigned":
        sig.unlink()
    elif attack == "re-signed by another key":
        sign_bundle(bundle, keys / "b.key")
    elif attack == "re-signed, signer field forged":
        sign_bundle(bundle, keys / "b.key")
        record = json.loads(sig.read_text())
        record["public_key"] = pinned  # claims to be by the pinned key
        sig.write_text(json.dumps(record))
    elif attack == "model swapped, sha256 updated":
        _swap_model_and_update_hash(bundle)
    elif attack == "manifest edited after signing":
        _lower_thresholds(bundle)
    else:
        sig.write_text("{not json")
    with pytest.raises(BundleError, match=text):
        load_bundle(bundle, public_key=pinned)


def test_recognizer_pins_the_key_for_its_bundles(tmp_path, keys):
    from crres_sdk.recognizer import Recognizer, find_model_bundle

    try:
        find_model_bundle("default")
    except BundleError as exc:
        pytest.skip(f"no default model bundle: {exc}")
    with pytest.raises(BundleError, match="is not signed"):
        Recognizer(public_key=(keys / "a.pub").read_text().strip(), backend="onnxruntime")


def test_signing_command_line_and_build_engine_option(keys, tmp_path, capsys):
    bundle = _copy(tmp_path)
    assert signing_main(["sign", str(bundle), "--key", str(keys / "a.key")]) == 0
    assert signing_main(["verify", str(bundle), "--public-key", str(keys / "a.pub")]) == 0
    assert signing_main(["verify", str(bundle), "--public-key", str(keys / "b.pub")]) == 1
    assert "not the pinned key" in capsys.readouterr().err
    with pytest.raises(BundleError, match="does not match its sha256"):  # a broken bundle is not signed
        (bundle / json.loads((bundle / "manifest.json").read_text())["files"]["onnx"]["estimator"]["path"]
         ).write_bytes(b"x")
        sign_bundle(bundle, keys / "a.key")
    from export.build_engine import build_parser

    args = build_parser().parse_args(["--target", "onnx", "--checkpoint", "c.pt", "--calib", "d", "--out", "o",
                                      "--signing-key", str(keys / "a.key")])
    assert args.signing_key == str(keys / "a.key")
