"""Keys and what they protect: AES-256-GCM keys (generated, written, read from a key, a file or an environment
variable) and the cipher that seals values with their row's identity as associated data; the typed encoding of
MAC and associated-data fields; the integrity key's uses (row MACs, the keyed audit chain and head, the meta MAC,
the row-set digest) and the integrity key file beside a plain gallery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from crres_sdk.gallery.errors import GalleryKeyError
from crres_sdk.gallery.records import FORMAT, FORMAT_V1

#: Where a plain gallery's integrity key lives by default: beside the database, this suffix appended.
INTEGRITY_KEY_SUFFIX = ".integrity-key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_CHECK = b"crres-gallery key check"


def generate_key() -> bytes:
    """A fresh random 32-byte AES-256 key."""
    return os.urandom(_KEY_BYTES)


def write_key_file(path: str | Path, key: bytes | None = None) -> bytes:
    """Write ``key`` (or a new one) as 64 hex characters to a new file readable by its owner only."""
    key = generate_key() if key is None else _check_key_bytes(key)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def _check_key_bytes(key: Any) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise GalleryKeyError(f"key must be {_KEY_BYTES} bytes, got {type(key).__name__}")
    key = bytes(key)
    if len(key) != _KEY_BYTES:
        raise GalleryKeyError(f"key must be {_KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def _parse_key_text(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) == _KEY_BYTES:
        return raw
    raise GalleryKeyError(f"{where}: expected a {_KEY_BYTES}-byte key as {2 * _KEY_BYTES} hex characters or base64")


def _resolve_key(key: bytes | None, key_file: str | Path | None, key_env: str | None) -> bytes | None:
    given = [n for n, v in (("key", key), ("key_file", key_file), ("key_env", key_env)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass at most one of key=, key_file=, key_env= (got {', '.join(given)})")
    if key is not None:
        return _check_key_bytes(key)
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes()
        except OSError as exc:
            raise GalleryKeyError(f"cannot read key file {key_file}: {exc.strerror or exc}") from exc
        if len(raw) == _KEY_BYTES:
            return raw
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise GalleryKeyError(f"key file {key_file}: {len(raw)} bytes, neither a raw {_KEY_BYTES}-byte key "
                                  "nor hex/base64 text") from None
        return _parse_key_text(text, f"key file {key_file}")
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            raise GalleryKeyError(f"environment variable {key_env} (key_env) is not set")
        return _parse_key_text(value, f"environment variable {key_env}")
    return None


class _Cipher:
    """AES-256-GCM with a random 96-bit nonce per sealed value and the row's identity as associated data."""

    def __init__(self, key: bytes):
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImportError("at-rest gallery encryption needs the 'cryptography' package: "
                              "pip install 'crres[crypto]'") from exc
        self._aead = AESGCM(key)
        self._invalid = InvalidTag

    def seal(self, data: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        return self._aead.encrypt(nonce, data, aad), nonce

    def open(self, sealed: bytes, nonce: bytes, aad: bytes, what: str) -> bytes:
        try:
            return self._aead.decrypt(bytes(nonce), bytes(sealed), aad)
        except self._invalid:
            raise GalleryKeyError(f"{what} fails authentication: wrong key, or the row was altered or moved") from None


def _aad_v1(kind: str, *parts: Any) -> bytes:
    """Associated data of format-1 galleries (read once, when upgrading them)."""
    return f"{FORMAT_V1}:{kind}:".encode() + b":".join(
        struct.pack("<d", p) if isinstance(p, float) else str(p).encode() for p in parts)


_U32, _I64, _F64 = struct.Struct("<I").pack, struct.Struct("<q").pack, struct.Struct("<d").pack


def _enc(*parts: Any) -> bytes:
    """Unambiguous encoding of MAC / associated-data fields: each typed and length-prefixed, so a name holding
    a separator cannot make two different rows encode alike."""
    out = []
    for p in parts:
        t = type(p)  # fast paths first: this runs for every row written, read and checked
        if t is str:
            data = p.encode()
            out.append(b"s" + _U32(len(data)) + data)
        elif t is int:
            out.append(b"i" + _I64(p))
        elif t is float:
            out.append(b"d" + _F64(p))
        elif t is bytes:
            out.append(b"s" + _U32(len(p)) + p)
        elif p is None:
            out.append(b"n")
        elif isinstance(p, bool):
            out.append(b"t" if p else b"f")
        elif isinstance(p, (int, np.integer)):
            out.append(b"i" + struct.pack("<q", int(p)))
        elif isinstance(p, (float, np.floating)):
            out.append(b"d" + struct.pack("<d", float(p)))
        else:
            data = p.encode() if isinstance(p, str) else bytes(p)
            out.append(b"s" + struct.pack("<I", len(data)) + data)
    return b"".join(out)


def _aad(kind: str, *parts: Any) -> bytes:
    return _enc(FORMAT, kind, *parts)


class _Integrity:
    """The gallery integrity key's uses: row MACs, the keyed audit chain, the head, the row-set digest."""

    def __init__(self, key: bytes):
        self.key = key

    def mac(self, kind: str, *parts: Any) -> bytes:
        return hmac.digest(self.key, _enc(FORMAT, kind, *parts), "sha256")  # one-shot C path: per-row cost

    def ok(self, stored: bytes | None, kind: str, *parts: Any) -> bool:
        return stored is not None and hmac.compare_digest(bytes(stored), self.mac(kind, *parts))

    def element(self, mac: bytes | None) -> int:
        """A row's share of the set digest (XOR of these over every live row). Keyed, so whoever deletes or adds
        a row by SQL cannot update the digest to match."""
        return int.from_bytes(hmac.digest(self.key, b"set:" + bytes(mac or b""), "sha256"), "big")

    def key_check(self) -> str:
        return self.mac("key-check").hex()

    def chain(self, prev: str, rid: int, t: float, action: str, identity: str | None, count: int,
              detail: str | None) -> str:
        return self.mac("audit", prev, rid, t, action, identity, count, detail).hex()

    def head(self, last_id: int, last_chain: str, state: str, keyed_from: int) -> str:
        return self.mac("head", last_id, last_chain, state, keyed_from).hex()

    def meta(self, fields: Mapping[str, str | None]) -> str:
        return self.mac("meta", *[x for k in _BOUND_META for x in (k, fields.get(k))]).hex()


#: Meta entries bound by the meta MAC (the rest are caches or covered by their own check).
_BOUND_META = ("format", "model_name", "model_version", "model_dim", "created", "thumbnails", "encrypted")


def _derived_integrity_key(aes_key: bytes) -> bytes:
    """An encrypted gallery's integrity key: a PRF of its encryption key (no second secret to keep)."""
    return hmac.new(aes_key, b"crres-gallery integrity key", hashlib.sha256).digest()


_PENDING = "pending-upgrade"


def _read_integrity_key(path: Path) -> tuple[bytes, bool] | None:
    """(key, pending) from an integrity key file, None when there is none; ``pending`` marks a key written by
    an upgrade that may not have committed."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryKeyError(f"cannot read the integrity key file {path}: {exc}") from exc
    lines = text.split()
    return _parse_key_text(lines[0] if lines else "", f"integrity key file {path}"), _PENDING in lines[1:]


def _write_integrity_key(path: Path, key: bytes, pending: bool = False) -> None:
    """Atomically (temporary file, fsync, rename), owner-only."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n" + (_PENDING + "\n" if pending else ""))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
