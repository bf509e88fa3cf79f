#!/bin/sh
# Builds this bundle's TensorRT @TRT_VERSION@.x INT8 engine ON THE TARGET DEVICE and registers it in manifest.json
# (sha256, TensorRT version, GPU): engines are specific to the GPU and TensorRT version that build them.
# Explicit quantization: the Q/DQ scales come from @QDQ@. Template: export/build_engine.sh in the crres
# repository, filled in by export/build_engine.py --target jetson.
#   sh build_engine.sh                  trtexec (TRTEXEC=..., default: trtexec on PATH or JetPack's)
#   BUILDER=python sh build_engine.sh   TensorRT's Python builder (trt_tool.py build)
# Needs: TensorRT with its Python package, cuda-python (pip install cuda-python) and the crres package.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
WANT=@TRT_VERSION@
HAVE=$("$PYTHON" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)
if [ -z "$HAVE" ]; then
  echo "error: $PYTHON cannot import tensorrt (JetPack: apt install python3-libnvinfer)" >&2; exit 2
fi
case "$HAVE" in "$WANT"|"$WANT".*) ;; *)
  echo "error: TensorRT $HAVE on this device, the bundle was made for TensorRT $WANT" >&2; exit 2;;
esac
if [ "${BUILDER:-trtexec}" = python ]; then
  "$PYTHON" trt_tool.py build . --engine @ENGINE@ "$@"
else
  TRTEXEC=${TRTEXEC:-trtexec}
  if ! command -v "$TRTEXEC" >/dev/null 2>&1 && [ -x /usr/src/tensorrt/bin/trtexec ]; then
    TRTEXEC=/usr/src/tensorrt/bin/trtexec
  fi
  "$TRTEXEC" --onnx=@QDQ@ --int8 --fp16 --saveEngine=@ENGINE@ \
    --minShapes=@INPUT@:@MIN_SHAPE@ --optShapes=@INPUT@:@OPT_SHAPE@ --maxShapes=@INPUT@:@MAX_SHAPE@
  "$PYTHON" trt_tool.py register . --engine @ENGINE@ --builder "trtexec" "$@"
fi
echo "Check the engine's parity on this device (exit 1 when a band is below its floor):"
echo "  $PYTHON $(pwd)/trt_tool.py parity $(pwd)"
