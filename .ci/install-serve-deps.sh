#!/usr/bin/env bash
# Debian packages the `crres serve` tests use (tests/serve): the mosquitto MQTT broker (the tests start their own
# on 127.0.0.1 and stop it after; the package's system service is not needed and is not started here) and
# headless Chromium with chromedriver (the operator page test drives it through selenium); GStreamer's RTSP server
# with its Python bindings for Debian's python3 (tests/serve/rtsp_server.py serves the demo clip over RTSP on
# 127.0.0.1 for the camera reader test; it is started by the test and killed after).
# Idempotent: installs only what is missing. With --skip-if-unavailable a machine that cannot get them prints
# why and exits 0 (the tests then skip with the reason printed).
set -euo pipefail
skip_ok=0
[[ "${1:-}" == "--skip-if-unavailable" ]] && skip_ok=1

unavailable() {
    if [[ $skip_ok == 1 ]]; then
        echo "install-serve-deps SKIPPED: $*"
        exit 0
    fi
    echo "install-serve-deps: $*" >&2
    exit 1
}

missing=()
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
for pkg in gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "serve test dependencies present: mosquitto, chromium, chromedriver, gst-rtsp-server"
    exit 0
fi
echo "installing ${missing[*]} with apt-get"
command -v apt-get >/dev/null || unavailable "no apt-get on this machine (missing: ${missing[*]})"
sudo=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || unavailable "not root and no sudo (missing: ${missing[*]})"
    sudo=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
# Never start the broker's system service from the package's postinst: the tests run their own on loopback.
policy_added=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    policy_added=1
fi
cleanup() { [[ $policy_added == 1 ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; true; }
trap cleanup EXIT
"${sudo[@]}" apt-get update -qq || unavailable "apt-get update failed"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || unavailable "apt-get install ${missing[*]} failed"
echo "installed ${missing[*]}"
