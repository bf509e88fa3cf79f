"""Ed25519 signing of model bundles at export; the SDK verifies them against a pinned public key.

    python -m export.signing keygen --private signing.key --public signing.pub   # once, keep signing.key secret
    python -m export.signing sign BUNDLE --key signing.key                         # or build_engine --signing-key
    python -m export.signing verify BUNDLE --public-key signing.pub

A signature (``BUNDLE/manifest.sig``, JSON: format, algorithm, signer's public key, signature) covers the exact
bytes of ``manifest.json``, which lists every model file's sha256, so a swapped model file, an edited threshold or
a re-computed hash all break it. The bundle is checked (schema, thresholds, file hashes) before it is signed.
Deployments pin the public key: ``Recognizer(public_key=...)``, ``load_bundle(..., public_key=...)`` or
``CRRES_BUNDLE_PUBLIC_KEY``; then unsigned and re-signed bundles are refused (``crres_sdk.bundle``).

The private key file is PKCS#8 PEM, written owner-only; the public key is 64 hex characters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crres_sdk.bundle import SIGNATURE_FILE, SIGNATURE_FORMAT, load_bundle, signed_payload


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a signing key
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate_keypair(private_path: str | Path, public_path: str | Path | None = None) -> str:
    """A new Ed25519 key: private key PEM at ``private_path`` (owner-only, must not exist), public key hex at
    ``public_path`` when given. Returns the public key as hex."""
    key = Ed25519PrivateKey.generate()
    _write_private(Path(private_path), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    public = public_key_hex(key)
    if public_path is not None:
        Path(public_path).write_text(public + "\n")
    return public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read an Ed25519 private key from {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign_bundle(root: str | Path, private_key: str | Path | Ed25519PrivateKey) -> Path:
    """Check the bundle (schema, thresholds, file hashes), then write ``manifest.sig`` over its manifest bytes."""
    root = Path(root)
    key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    load_bundle(root)  # refuse to sign a bundle the SDK would refuse anyway
    manifest = (root / "manifest.json").read_bytes()
    record = {"format": SIGNATURE_FORMAT, "algorithm": "ed25519", "public_key": public_key_hex(key),
              "signature": key.sign(signed_payload(manifest)).hex()}
    out = root / SIGNATURE_FILE
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.signing", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("keygen", help="make a signing key pair")
    q.add_argument("--private", required=True)
    q.add_argument("--public", required=True)
    q = sub.add_parser("sign", help="sign a bundle")
    q.add_argument("bundle")
    q.add_argument("--key", required=True, help="private key (PEM)")
    q = sub.add_parser("verify", help="verify a bundle against a public key")
    q.add_argument("bundle")
    q.add_argument("--public-key", required=True, help="64 hex characters or a file holding them")
    args = p.parse_args(argv)
    try:
        if args.cmd == "keygen":
            print(generate_keypair(args.private, args.public))
        elif args.cmd == "sign":
            print(sign_bundle(args.bundle, args.key))
        else:
            b = load_bundle(args.bundle, public_key=args.public_key)
            print(f"{b.root}: signature valid, files match their hashes")
    except (ValueError, OSError) as exc:  # BundleError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
