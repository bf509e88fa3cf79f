"""The ``crres serve`` configuration file (YAML), checked field by field.

Every problem names its place in the file (``cameras[1].source: ...``) and raises :class:`ConfigError`; unknown
keys are refused (a typo must not silently fall back to a default). See README "crres serve" for an example.

API keys are stored hashed: the file holds ``sha256:<hex>`` of each key (``crres serve --hash-key`` prints it for a
new random key); a request presents the key itself in ``X-Api-Key`` (as CompreFace clients do) or
``Authorization: Bearer``. Keys are 256-bit random tokens, so one SHA-256 is the appropriate hash (no password
stretching needed); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a bad field (the message names it)."""


@dataclass
class CameraConfig:
    name: str
    source: str | int
    max_fps: float = 5.0          # frames processed per second at most (the reader always keeps the newest)
    enabled: bool = True
    loop: bool = False            # files only: start again at the end (demo / test cameras)
    min_face: float | None = None  # px; faces narrower than this are ignored (None: recognition.min_face)


@dataclass
class RecognitionConfig:
    model: str = "default"
    backend: str = "auto"
    threads: int | None = None     # CPU threads per inference; None: cores // detect_workers (at least 1)
    fpir: str | None = "0.01"      # 1:N decisions: the chance a stranger is named (None: per-pair far instead)
    far: str = "1e-3"              # 1:1 verify (and 1:N when fpir is None): the per-pair false-accept rate
    detector_min_face: int = 20    # MTCNN's smallest face (px): 12 finds tinier faces at ~2x the cost, 6-11 upsample
    min_face: float = 0.0          # px box width below which detected faces are ignored
    batch_size: int = 32
    detect_workers: int = 1        # frames detected in parallel (ONNX Runtime/OpenVINO release the GIL)
    min_enroll_resolution: float = 40.0  # quality check on uploaded enrolment photos (px, probe resolution)
    track_timeout_s: float = 2.0   # a track not seen for this long has ended
    min_track_frames: int = 2      # frames before a track's first event
    # Re-identification: a track already named with a confident score (at least reidentify_margin of the way
    # from its threshold to 1) is embedded again only every reidentify_every frames, or when its face grew by
    # reidentify_growth (its probe resolution since the last embedding); unknown and unsure tracks are embedded
    # every frame. 1 = every frame.
    reidentify_every: int = 5
    reidentify_margin: float = 0.3
    reidentify_growth: float = 1.25
    # Motion gate: MTCNN runs only on the parts of a frame that changed since it last looked there (regions
    # around changed 4 x 4 px cells, grown by a margin); faces in unchanged parts are kept. A frame where more
    # than motion_max_area of the picture changed, and every camera at least every full_detect_every_s, is
    # detected whole. motion_threshold: a cell's mean grey change (0-255) that counts as change.
    motion_gate: bool = True
    motion_threshold: float = 8.0
    motion_max_area: float = 0.5
    full_detect_every_s: float = 2.0


@dataclass
class GalleryConfig:
    path: str = "crres-gallery.db"
    key_file: str | None = None
    key_env: str | None = None
    thumbnails: bool = False         # face images allowed: event crops, MQTT snapshots, unknown faces on the page


@dataclass
class ApiKey:
    name: str
    sha256: str


@dataclass
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: list[ApiKey] = field(default_factory=list)
    public_metrics: bool = True     # /metrics without a key (Prometheus scrapers)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_upload_mb: float = 10.0
    page: bool = True


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_env: str | None = None  # the password comes from this environment variable, never the file
    client_id: str = "crres"
    topic_prefix: str = "crres"
    snapshot: bool = False           # base64 JPEG of the face crop in events (only if the gallery allows it)
    discovery: bool = True           # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    keepalive: int = 30


@dataclass
class EventsConfig:
    keep: int = 500                  # recent events kept for the page and /api/events
    unknown_groups: int = 50         # unknown people kept for labelling (a person seen again joins their group)


@dataclass
class ServeConfig:
    cameras: list[CameraConfig]
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    path: Path | None = None


# ------------------------------------------------------------------------------------------------ checking

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA = re.compile(r"^sha256:[0-9a-f]{64}$")


def _fields(where: str, data: Any, allowed: dict[str, Any]) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return data


def _num(where: str, value: Any, lo: float, hi: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{where}: must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: must be in [{lo:g}, {hi:g}], got {value!r}")
    return value


def _str(where: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _section(cls: type, where: str, data: Any, checks: dict[str, Any]) -> Any:
    data = _fields(where, data, checks)
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = checks[key](f"{where}.{key}", value)
    return cls(**kwargs)


def _camera(where: str, data: Any) -> CameraConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping with name and source")
    for key in ("name", "source"):
        if key not in data:
            raise ConfigError(f"{where}: missing {key}")
    cam = _section(CameraConfig, where, data, {
        "name": lambda w, v: _check_name(w, v),
        "source": lambda w, v: v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else _str(w, v),
        "max_fps": lambda w, v: float(_num(w, v, 0.1, 120)),
        "enabled": _bool, "loop": _bool,
        "min_face": lambda w, v: None if v is None else float(_num(w, v, 0, 10000)),
    })
    return cam


def _check_name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"{where}: camera names are 1-64 characters of letters, digits, '_' and '-' starting "
                          f"with a letter or digit (they become MQTT topics and URLs), got {value!r}")
    return value


def _api_keys(where: str, value: Any) -> list[ApiKey]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of {{name, sha256}}")
    keys = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        item = _fields(w, item, {"name": 1, "sha256": 1})
        name = _str(f"{w}.name", item.get("name"))
        digest = item.get("sha256")
        if not isinstance(digest, str) or not _SHA.match(digest):
            raise ConfigError(f"{w}.sha256: must be 'sha256:' and 64 lowercase hex digits (the hash of the key, "
                              "never the key itself; `crres serve --hash-key` makes one)")
        keys.append(ApiKey(name, digest))
    return keys


def _far(where: str, value: Any) -> str:
    text = str(value)
    try:
        f = float(text)
    except ValueError:
        raise ConfigError(f"{where}: must be a false-accept rate such as \"1e-3\", got {value!r}") from None
    if not 0 < f < 1:
        raise ConfigError(f"{where}: must lie in (0, 1), got {value!r}")
    return text


def parse_config(data: Any, path: Path | None = None) -> ServeConfig:
    """A :class:`ServeConfig` from parsed YAML (a dict); relative file paths are taken from ``path``'s folder."""
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration must be a mapping at the top level, got {type(data).__name__}")
    _fields("config", data, {"cameras": 1, "recognition": 1, "gallery": 1, "api": 1, "mqtt": 1, "events": 1})
    cams = data.get("cameras")
    if cams is None:
        cams = []
    if not isinstance(cams, list):
        raise ConfigError("cameras: must be a list of {name, source, ...}")
    cameras = [_camera(f"cameras[{i}]", c) for i, c in enumerate(cams)]
    names = [c.name for c in cameras]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"cameras: duplicate name(s) {', '.join(dup)}")
    opt_int = lambda lo, hi: lambda w, v: None if v is None else _num(w, v, lo, hi, integer=True)  # noqa: E731
    recognition = _section(RecognitionConfig, "recognition", data.get("recognition"), {
        "model": _str, "backend": lambda w, v: _choice(w, v, ("auto", "onnxruntime", "openvino", "tensorrt")),
        "threads": opt_int(1, 256), "far": _far, "fpir": lambda w, v: None if v is None else _far(w, v),
        "detector_min_face": lambda w, v: _num(w, v, 6, 1000, integer=True),
        "min_face": lambda w, v: float(_num(w, v, 0, 10000)),
        "batch_size": lambda w, v: _num(w, v, 1, 1024, integer=True),
        "detect_workers": lambda w, v: _num(w, v, 1, 64, integer=True),
        "min_enroll_resolution": lambda w, v: float(_num(w, v, 1, 112)),
        "track_timeout_s": lambda w, v: float(_num(w, v, 0.1, 600)),
        "min_track_frames": lambda w, v: _num(w, v, 1, 1000, integer=True),
        "reidentify_every": lambda w, v: _num(w, v, 1, 10000, integer=True),
        "reidentify_margin": lambda w, v: float(_num(w, v, 0, 1)),
        "reidentify_growth": lambda w, v: float(_num(w, v, 1, 100)),
        "motion_gate": _bool,
        "motion_threshold": lambda w, v: float(_num(w, v, 0.5, 255)),
        "motion_max_area": lambda w, v: float(_num(w, v, 0, 1)),
        "full_detect_every_s": lambda w, v: float(_num(w, v, 0, 3600)),
    })
    gallery = _section(GalleryConfig, "gallery", data.get("gallery"), {
        "path": _str, "key_file": lambda w, v: _str(w, v, True), "key_env": lambda w, v: _str(w, v, True),
        "thumbnails": _bool})
    api = _section(ApiConfig, "api", data.get("api"), {
        "host": _str, "port": lambda w, v: _num(w, v, 0, 65535, integer=True), "api_keys": _api_keys,
        "public_metrics": _bool, "tls_cert": lambda w, v: _str(w, v, True), "tls_key": lambda w, v: _str(w, v, True),
        "max_upload_mb": lambda w, v: float(_num(w, v, 0.01, 1024)), "page": _bool})
    if (api.tls_cert is None) != (api.tls_key is None):
        raise ConfigError("api: TLS needs both tls_cert and tls_key (PEM files)")
    mqtt = _section(MqttConfig, "mqtt", data.get("mqtt"), {
        "enabled": _bool, "host": _str, "port": lambda w, v: _num(w, v, 1, 65535, integer=True),
        "username": lambda w, v: _str(w, v, True), "password_env": lambda w, v: _str(w, v, True),
        "client_id": _str, "topic_prefix": _topic, "snapshot": _bool, "discovery": _bool,
        "discovery_prefix": _topic, "keepalive": lambda w, v: _num(w, v, 5, 3600, integer=True)})
    events = _section(EventsConfig, "events", data.get("events"), {
        "keep": lambda w, v: _num(w, v, 1, 100000, integer=True),
        "unknown_groups": lambda w, v: _num(w, v, 0, 10000, integer=True)})
    base = path.parent if path is not None else Path.cwd()

    def resolve(p: str | None) -> str | None:
        return None if p is None else str(p if Path(p).is_absolute() else base / p)

    gallery.path = resolve(gallery.path)
    gallery.key_file = resolve(gallery.key_file)
    api.tls_cert, api.tls_key = resolve(api.tls_cert), resolve(api.tls_key)
    if recognition.model not in ("default",) and ("/" in recognition.model or recognition.model.startswith(".")):
        recognition.model = resolve(recognition.model)
    for cam in cameras:
        if isinstance(cam.source, str) and not _is_url_or_pipeline(cam.source) and not cam.source.isdigit():
            cam.source = resolve(cam.source)
    return ServeConfig(cameras=cameras, recognition=recognition, gallery=gallery, api=api, mqtt=mqtt, events=events,
                       path=path)


def _is_url_or_pipeline(text: str) -> bool:
    return "://" in text or "!" in text


def _choice(where: str, value: Any, choices: tuple) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _topic(where: str, value: Any) -> str:
    text = _str(where, value)
    if any(c in text for c in "#+\0") or text.startswith("/") or text.endswith("/"):
        raise ConfigError(f"{where}: an MQTT topic prefix without wildcards (#, +) or leading/trailing '/', "
                          f"got {value!r}")
    return text


def load_config(path: str | os.PathLike) -> ServeConfig:
    """Read and check a YAML configuration file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, path)


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form of an API key, as the configuration stores it."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A new random API key and its hash for the configuration file."""
    key = "crres_" + secrets.token_urlsafe(32)
    return key, hash_key(key)
