"""One place finds model bundles: explicit path > the bundle's variable > $CRRES_MODELS > package > checkout > cache."""

from __future__ import annotations

import os

import pytest

from crres_sdk import bundle as bundle_module
from crres_sdk.bundle import (BundleError, find_bundle, fix_command, in_checkout, load_bundle, locate_bundle,
                              model_sources, user_models_dir)
from tests.sdk.model_dirs import search_path, write_bundle  # noqa: F401  (fixture)

HOW_TO_BUILD = "Train it: python -m training.something --out models/x."


def test_search_order_and_origins(search_path, tmp_path):
    assert [s.origin for s in model_sources()] == ["$CRRES_MODELS", "package", "checkout", "user cache"]
    order = ["env", "package", "checkout", "cache"]
    for origin in order:
        write_bundle(search_path[origin] / "crres_default", "face-embedding")
    for i, origin in enumerate(order):  # remove the winner each round: the next one in the order takes over
        assert find_bundle("crres_default", "CRRES_MODEL_BUNDLE", None, HOW_TO_BUILD) == \
            search_path[origin] / "crres_default"
        assert locate_bundle("crres_default")[1] == model_sources()[i].origin
        (search_path[origin] / "crres_default" / "manifest.json").unlink()
    assert locate_bundle("crres_default") is None


def test_explicit_path_and_bundle_variable_win(search_path, tmp_path, monkeypatch):
    write_bundle(search_path["env"] / "mtcnn", "face-detection")
    by_var = write_bundle(tmp_path / "by_var", "face-detection")
    explicit = write_bundle(tmp_path / "explicit", "face-detection")
    monkeypatch.setenv("CRRES_DETECTOR_BUNDLE", str(by_var))
    assert find_bundle("mtcnn", "CRRES_DETECTOR_BUNDLE", explicit, HOW_TO_BUILD) == explicit
    assert find_bundle("mtcnn", "CRRES_DETECTOR_BUNDLE", None, HOW_TO_BUILD) == by_var
    monkeypatch.setenv("CRRES_DETECTOR_BUNDLE", str(tmp_path / "nowhere"))  # a wrong variable is an error, not skipped
    with pytest.raises(BundleError, match=r"nowhere.*CRRES_DETECTOR_BUNDLE"):
        find_bundle("mtcnn", "CRRES_DETECTOR_BUNDLE", None, HOW_TO_BUILD)


def test_crres_models_holds_several_folders(search_path, tmp_path, monkeypatch):
    second = tmp_path / "second"
    write_bundle(second / "resolution_estimator", "resolution-estimation")
    monkeypatch.setenv("CRRES_MODELS", os.pathsep.join([str(search_path["env"]), str(second)]))
    assert [s.root for s in model_sources()][:2] == [search_path["env"], second]
    assert locate_bundle("resolution_estimator") == (second / "resolution_estimator", "$CRRES_MODELS")


def test_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_models_dir() == tmp_path / "crres" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_models_dir() == tmp_path / "home" / ".cache" / "crres" / "models"


def test_installed_package_is_not_pointed_at_the_source_tree(search_path, monkeypatch):
    """From a wheel (no checkout) a missing bundle names the command that fixes it there, never a training script."""
    monkeypatch.setattr(bundle_module, "in_checkout", lambda: False)
    assert "checkout" not in [s.origin for s in model_sources()]
    with pytest.raises(BundleError) as err:
        find_bundle("mtcnn", "CRRES_DETECTOR_BUNDLE", None, HOW_TO_BUILD)
    assert "crres models fetch" in str(err.value) and "training" not in str(err.value)
    with pytest.raises(BundleError) as err:
        find_bundle("crres_default", "CRRES_MODEL_BUNDLE", None, HOW_TO_BUILD)
    assert "pip install --force-reinstall" in str(err.value) and "training" not in str(err.value)
    monkeypatch.setattr(bundle_module, "in_checkout", lambda: True)  # a checkout gets the caller's build command
    with pytest.raises(BundleError, match="python -m training.something"):
        find_bundle("some_other_model", "CRRES_MODEL_SOME_OTHER_MODEL", None, HOW_TO_BUILD)
    assert fix_command("mtcnn") == "make setup"


def test_bundles_found_by_name_keep_their_hash_check(search_path):
    folder = write_bundle(search_path["package"] / "resolution_estimator", "resolution-estimation")
    load_bundle(find_bundle("resolution_estimator", "CRRES_ESTIMATOR_BUNDLE", None, HOW_TO_BUILD))
    (folder / "model.onnx").write_bytes(b"replaced")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(find_bundle("resolution_estimator", "CRRES_ESTIMATOR_BUNDLE", None, HOW_TO_BUILD))


def test_this_checkout_is_recognised():
    assert in_checkout()  # the tests run from the source tree
    assert bundle_module.REPO_MODELS.name == "models" and (bundle_module.REPO_MODELS / "crres_default").is_dir()
