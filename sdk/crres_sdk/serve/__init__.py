"""``crres serve``: cameras in, events out. A REST API (FastAPI on uvicorn), MQTT events (paho-mqtt) and an operator
page around one shared :class:`crres_sdk.Recognizer`.

Needs the ``serve`` extra: ``pip install "crres[serve]"``. The SDK core never imports this package.

Modules: :mod:`.config` (the YAML file), :mod:`.cameras` (a reader thread per camera), :mod:`.engine` (the shared
recognizer: detection, tracking, batched embedding, events), :mod:`.mqtt` (events, availability, Home Assistant
discovery), :mod:`.api` (REST API, CompreFace-compatible endpoint, metrics), ``static/`` (the operator page),
:mod:`.app` (wiring and the process's life), :mod:`.simulate` (MJPEG test cameras).
"""

from __future__ import annotations

INSTALL_HINT = 'crres serve needs the serve extra: pip install "crres[serve]"'


def missing_dependencies() -> list[str]:
    """The serve extra's modules that cannot be imported here (empty when all are installed)."""
    import importlib.util

    modules = {"fastapi": "fastapi", "uvicorn": "uvicorn", "paho.mqtt": "paho-mqtt", "yaml": "pyyaml",
               "multipart": "python-multipart"}
    missing = []
    for module, package in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing
