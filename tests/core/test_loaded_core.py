"""The core under test is the one asked for (guards make test-sanitize against testing the release build)."""

import os
from pathlib import Path

from crres_sdk import _core


def test_core_is_the_requested_build():
    requested = os.environ.get("CRRES_CORE_PATH")
    if requested:
        assert Path(_core.__file__).resolve() == Path(requested).resolve()
    else:
        assert Path(_core.__file__).name.startswith("_core")
