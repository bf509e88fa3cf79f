"""``crres serve`` on the command line: a clear error without the serve extra (and an SDK that imports without
it), key hashing, configuration checks."""

from __future__ import annotations

import subprocess
import sys

from tests.serve.conftest import ROOT

BLOCK = "import sys\nfor m in ('fastapi', 'uvicorn', 'paho', 'paho.mqtt', 'yaml', 'multipart', 'starlette'):\n" \
        "    sys.modules[m] = None\n"


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_without_the_serve_extra_the_sdk_imports_and_serve_names_the_extra():
    done = run_py(BLOCK + "import crres_sdk, crres_sdk.cli, crres_sdk.serve, crres_sdk.serve.command\n"
                          "from crres_sdk.serve.command import main\n"
                          "sys.exit(main(['--config', 'crres.yaml']))\n")
    assert done.returncode == 1, done.stderr
    assert 'pip install "crres[serve]"' in done.stderr and "fastapi" in done.stderr
    done = run_py(BLOCK + "from crres_sdk.cli import main\nsys.exit(main(['serve', '--config', 'crres.yaml']))\n")
    assert done.returncode == 1 and 'pip install "crres[serve]"' in done.stderr, done.stderr


def test_hash_key_and_check(tmp_path):
    done = run_py("from crres_sdk.cli import main; import sys; sys.exit(main(['serve', '--hash-key']))")
    assert done.returncode == 0, done.stderr
    key = done.stdout.split("stored): ")[1].split()[0]
    digest = done.stdout.split('sha256: "')[1].split('"')[0]
    from crres_sdk.serve.config import hash_key

    assert hash_key(key) == digest and key not in done.stdout.split("configuration file:")[1]
    cfg = tmp_path / "crres.yaml"
    cfg.write_text(f"cameras:\n  - {{name: door, source: clip.mp4, loop: true}}\n"
                   f"api:\n  api_keys: [{{name: ha, sha256: \"{digest}\"}}]\n")
    done = run_py(f"from crres_sdk.serve.command import main; import sys; sys.exit(main(['--config', r'{cfg}', "
                  f"'--check']))")
    assert done.returncode == 0 and "1 camera(s): door" in done.stdout, done.stderr
    cfg.write_text("cameras:\n  - {name: door, source: 0, fps: 5}\n")
    done = run_py(f"from crres_sdk.serve.command import main; import sys; sys.exit(main(['--config', r'{cfg}']))")
    assert done.returncode == 1 and "cameras[0]: unknown key(s) fps" in done.stderr
