"""Shared test configuration.

* ``CRRES_CORE_PATH``: load ``crres_sdk._core`` from this file instead of the installed one (``make
  test-sanitize`` points it at the ASan/UBSan build) before ``crres_sdk`` is first imported.
* Hypothesis profiles: ``default`` for CI, ``sanitize`` with fewer examples (sanitised code is ~3x slower).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_core_path = os.environ.get("CRRES_CORE_PATH")
if _core_path:
    spec = importlib.util.spec_from_file_location("crres_sdk._core", _core_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"CRRES_CORE_PATH={_core_path!r} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["crres_sdk._core"] = module

settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("sanitize", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Shared data beside the checkout (DESIGN section 5); tests that need it skip without it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
