#!/usr/bin/env bash
# What `pip install crres` gives, tried as a new user would (issue 21 items 7-8):
#   1. the sdist and the wheel are built from the checkout mounted read-only (build directory in a temp folder;
#      `python -m build` makes the sdist and a wheel from it, `pip wheel` the wheel from the tree);
#   2. for each Python asked for, a fresh venv outside the repository gets the wheel with crres[ort,opencv,convert]
#      from the package index (numpy, ONNX Runtime, headless OpenCV, onnx: no torch), and runs
#      `crres models list` (exit 1 naming `crres models fetch` while the detector is missing), `crres models fetch`,
#      `crres models list` again (exit 0, embedder and estimator from the package), `crres verify` on two photos
#      (scikit-image's astronaut, and the same photo rotated 12 degrees and scaled to 55 %: "same person") and
#      `Recognizer().identify(frame)` on the astronaut from Python, then a short clip of the demo package crres_demo
#      (shipped beside the SDK, which never imports it).
# Usage: .ci/wheel-smoke.sh [--out DIR] [--build-only] [--python PY|X.Y]...   (default: python3; X.Y is pythonX.Y
# or pyenv's X.Y.*; one that this machine lacks is skipped with the reason, so CI can ask for 3.10 where it exists)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# make setup's venv (Makefile: the one its VENV names): has `build`, and scikit-image and OpenCV for the photos
DEV_PY="${CRRES_DEV_PYTHON:-$ROOT/.venv/bin/python}"
OUT="" BUILD_ONLY=0 PYTHONS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --build-only) BUILD_ONLY=1; shift ;;
        --python) PYTHONS+=("$2"); shift 2 ;;
        *) echo "usage: $0 [--out DIR] [--build-only] [--python PY]..." >&2; exit 2 ;;
    esac
done
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=(python3)
[ -x "$DEV_PY" ] || { echo "wheel-smoke: $DEV_PY missing: run make setup first" >&2; exit 1; }
WORK="$(mktemp -d /tmp/crres-wheel.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
step() { echo "== wheel-smoke: $*"; }
fail() { echo "wheel-smoke: FAILED: $*" >&2; exit 1; }

# Run "$@" with the checkout mounted read-only (a private mount namespace: nothing else sees it). Where mount
# namespaces are not allowed, run it as is and compare git's view of the tree before and after instead.
readonly_run() {
    if unshare --mount true 2>/dev/null; then
        unshare --mount bash -c 'mount --bind -o ro "$0" "$0" && mount -o remount,bind,ro "$0" && shift && exec "$@"' \
            "$ROOT" placeholder "$@"
    else
        echo "wheel-smoke: no mount namespace here: checking that the build leaves the tree unchanged instead"
        local before after
        before="$(git -C "$ROOT" status --porcelain --ignored)"
        "$@"
        after="$(git -C "$ROOT" status --porcelain --ignored)"
        [ "$before" = "$after" ] || fail "the build wrote into the checkout"
    fi
}

resolve_python() {  # resolve_python PY|X.Y: the path of a working interpreter, or nothing
    local spec="$1" candidate
    local candidates=("$spec")
    if [[ "$spec" =~ ^3\.[0-9]+$ ]]; then
        candidates=("python$spec" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$spec".*/bin/python)
    fi
    for candidate in "${candidates[@]}"; do  # a pyenv shim can exist and still refuse to run: try each
        if "$candidate" -c "import venv" >/dev/null 2>&1; then
            "$candidate" -c "import sys; print(sys.executable)"
            return
        fi
    done
}

build_wheel() {  # build_wheel PYTHON DEST: pip wheel from the read-only tree with that interpreter's pip
    local py="$1" dest="$2" tag
    tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    "$py" -m venv "$WORK/builder-$tag"
    "$WORK/builder-$tag/bin/python" -m pip install -q "pip>=25.1"
    readonly_run "$WORK/builder-$tag/bin/python" -m pip wheel -q --no-deps -w "$dest" \
        -C build-dir="$WORK/build-$tag" "$ROOT"
    ls "$dest"/crres-*-"$tag"-*.whl
}

mkdir -p "$WORK/dist" "$WORK/from-sdist"
step "sdist, and a wheel built from it, from the read-only checkout"
readonly_run "$DEV_PY" -m build -q --outdir "$WORK/from-sdist" -C build-dir="$WORK/build-sdist" "$ROOT" >/dev/null
SDIST="$(ls "$WORK"/from-sdist/crres-*.tar.gz)"
tar -tzf "$SDIST" | sed 's|^crres-[^/]*/||' > "$WORK/sdist.txt"
for member in CMakeLists.txt cpp/bindings.cpp sdk/crres_sdk/recognizer.py models/crres_default/model.int8.onnx \
              models/resolution_estimator/manifest.json; do
    grep -qx "$member" "$WORK/sdist.txt" || fail "the sdist lacks $member"
done
echo "$SDIST: $(wc -l < "$WORK/sdist.txt") files, $(du -h "$SDIST" | cut -f1)"
if grep -qE "^(training|evaluation|export|models/mtcnn)/" "$WORK/sdist.txt"; then
    fail "the sdist carries training/, evaluation/, export/ or the unpackaged detector bundle"
fi
cp "$SDIST" "$WORK/dist/"

for spec in "${PYTHONS[@]}"; do
    py="$(resolve_python "$spec")"
    if [ -z "$py" ]; then
        echo "wheel-smoke: SKIPPED Python $spec: no working interpreter for it on this machine"
        continue
    fi
    version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    step "wheel for Python $version ($py), pip wheel from the read-only checkout"
    WHEEL="$(build_wheel "$py" "$WORK/dist" | tail -1)"
    ls -l "$WHEEL"
    # The wheel from the sdist (same interpreter as the dev venv) must hold the same files as the one from the tree.
    SDIST_WHEEL="$(ls "$WORK"/from-sdist/crres-*.whl)"
    if [ "$(basename "$SDIST_WHEEL" | cut -d- -f3)" = "$(basename "$WHEEL" | cut -d- -f3)" ]; then
        diff <(unzip -Z1 "$WHEEL" | sort) <(unzip -Z1 "$SDIST_WHEEL" | sort) \
            || fail "the wheel built from the sdist differs from the one built from the tree"
    fi
    unzip -Z1 "$WHEEL" > "$WORK/wheel.txt"
    grep -qx "crres_sdk/models/crres_default/model.fp32.onnx" "$WORK/wheel.txt" || fail "no default model in the wheel"
    grep -qx "crres_demo/clip.py" "$WORK/wheel.txt" || fail "no demo package (crres_demo) in the wheel"
    [ $BUILD_ONLY = 1 ] && continue

    step "fresh venv outside the repository (Python $version): pip install crres[ort,opencv,convert]"
    USER_DIR="$WORK/user-$version"
    mkdir -p "$USER_DIR"
    "$py" -m venv "$USER_DIR/venv"
    "$USER_DIR/venv/bin/python" -m pip install -q "pip>=25.1"
    "$USER_DIR/venv/bin/python" -m pip install -q "$WHEEL[ort,opencv,convert]"
    "$DEV_PY" - "$USER_DIR" <<'EOF'
import sys
import cv2
from skimage.data import astronaut
out = sys.argv[1]
a = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
h, w = a.shape[:2]
b = cv2.warpAffine(a, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 0.55), (w, h), borderMode=cv2.BORDER_REFLECT)
cv2.imwrite(f"{out}/astronaut.png", a)
cv2.imwrite(f"{out}/astronaut_rotated_small.jpg", b)
EOF
    (
        cd "$USER_DIR"  # nothing of the checkout on sys.path; an empty model cache and no model variables
        export XDG_CACHE_HOME="$USER_DIR/cache"
        unset CRRES_MODELS CRRES_MODEL_BUNDLE CRRES_DETECTOR_BUNDLE CRRES_ESTIMATOR_BUNDLE PYTHONPATH
        export PATH="$USER_DIR/venv/bin:$PATH"
        python -c "import crres_sdk, sys; assert crres_sdk.__file__.startswith('$USER_DIR/venv/'), crres_sdk.__file__"

        step "crres models list before fetching the detector: must exit 1 and name the fix"
        set +e; crres models list >list1.out 2>list1.err; rc=$?; set -e
        cat list1.out list1.err
        [ $rc = 1 ] && grep -q "crres models fetch" list1.err || fail "models list: exit $rc, expected 1 with the fix"

        step "crres models fetch (facenet-pytorch's MIT weights converted without torch)"
        crres models fetch
        step "crres models list: complete, embedder and estimator from the package"
        crres models list | tee list2.out
        grep -qE "^  crres_default .* ok +package: " list2.out || fail "crres_default is not served from the package"
        grep -qE "^  resolution_estimator .* ok +package: " list2.out || fail "estimator is not served from the package"
        grep -qE "^  mtcnn .* ok +user cache: " list2.out || fail "the fetched detector is not in the user cache"

        step "crres verify on two photos of the astronaut"
        crres verify astronaut.png astronaut_rotated_small.jpg | tee verify.out
        grep -q "same person" verify.out || fail "crres verify did not find the same person"

        step "Recognizer().identify(frame) from Python"
        python - <<'EOF'
import sys
from crres_sdk import Recognizer, load_image
frame = load_image("astronaut.png")
faces = Recognizer().identify(frame)
assert len(faces) == 1, faces
face = faces[0]
x0, y0, x1, y1 = face.box
assert 150 < (x0 + x1) / 2 < 280 and 30 < (y0 + y1) / 2 < 160, face.box  # her face, upper middle of the photo
print(f"identify: 1 face, box {[round(float(v)) for v in face.box]}, {face.equivalent_resolution:.0f} px, "
      f"effective {face.effective_resolution:.0f} px, decision {face.decision}")
assert "torch" not in sys.modules
assert "crres_demo" not in sys.modules  # the runtime never imports the demo package, which the wheel carries
from crres_demo.clip import render_receding_clip
clip = render_receding_clip(frame, face.landmarks, n_frames=4, start_px=64, end_px=16)
assert len(clip) == 4 and "torch" not in sys.modules
print(f"crres_demo: a {len(clip)}-frame clip, faces {clip.face_px.round().astype(int).tolist()} px")
EOF
    )
    step "Python $version: ok"
done

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    cp "$WORK"/dist/* "$OUT"/
    ls -l "$OUT"
fi
step "passed"
