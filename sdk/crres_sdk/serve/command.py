"""``crres serve`` on the command line (also ``python -m crres_sdk.serve``). Imports nothing outside the standard
library until it runs, so ``crres --help`` works without the serve extra."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the YAML configuration file (README: crres serve)")
    p.add_argument("--check", action="store_true", help="check the configuration file, print a summary and exit")
    p.add_argument("--hash-key", action="store_true",
                   help="print a new random API key and the sha256 line for api.api_keys, then exit")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def serve_command(args: argparse.Namespace) -> int:
    from crres_sdk.serve import INSTALL_HINT, missing_dependencies

    missing = missing_dependencies()
    if missing:
        print(f"crres: {INSTALL_HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        return 1
    from crres_sdk.serve.config import ConfigError, load_config, new_api_key

    if args.hash_key:
        key, digest = new_api_key()
        print(f"API key (give it to the client; it is not stored): {key}")
        print("for the configuration file:")
        print(f"  api_keys:\n    - name: my-client\n      sha256: \"{digest}\"")
        return 0
    if not args.config:
        print("crres: serve needs --config crres.yaml (see README: crres serve)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"crres: {exc}", file=sys.stderr)
        return 1
    if args.check:
        print(f"{args.config}: ok; {len(cfg.cameras)} camera(s): "
              + ", ".join(f"{c.name} ({c.source})" for c in cfg.cameras)
              + f"; gallery {cfg.gallery.path}; API on {cfg.api.host}:{cfg.api.port}"
              + (" (TLS)" if cfg.api.tls_cert else "")
              + f"; MQTT {'%s:%d' % (cfg.mqtt.host, cfg.mqtt.port) if cfg.mqtt.enabled else 'off'}")
        return 0
    from crres_sdk.serve.app import run

    try:
        return run(cfg, log_level=args.log_level)
    except (ValueError, OSError, RuntimeError, ImportError) as exc:  # bundle, gallery, key, port in use ...
        print(f"crres: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crres serve", description="cameras in, events out: REST API, MQTT "
                                                                     "events and an operator page")
    add_arguments(parser)
    return serve_command(parser.parse_args(argv))
