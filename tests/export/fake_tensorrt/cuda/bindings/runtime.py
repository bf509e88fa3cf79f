"""Fake cuda-python runtime: device memory is host bytearrays behind integer "device pointers"."""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevicePointer = 17


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


#: pointer -> bytearray; every allocation and the calls made, for the tests to inspect.
MEMORY: dict[int, bytearray] = {}
STREAMS: set[int] = set()
CALLS: list[tuple] = []
_next = [0x7F0000000000]
DEVICE_COUNT = 1


def reset() -> None:
    MEMORY.clear()
    STREAMS.clear()
    CALLS.clear()


def _record(*call):
    CALLS.append(call)


def device_bytes(ptr: int, count: int) -> memoryview:
    """The fake device memory at ptr (an allocation's start), checked against its size."""
    if ptr not in MEMORY:
        raise AssertionError(f"{ptr:#x} is not a live device allocation")
    if count > len(MEMORY[ptr]):
        raise AssertionError(f"{count} bytes past a {len(MEMORY[ptr])}-byte allocation")
    return memoryview(MEMORY[ptr])[:count]


def cudaSetDevice(index: int):
    _record("cudaSetDevice", index)
    return (cudaError_t.cudaSuccess if 0 <= index < DEVICE_COUNT else cudaError_t.cudaErrorInvalidValue,)


def cudaGetDeviceProperties(index: int):
    _record("cudaGetDeviceProperties", index)
    return cudaError_t.cudaSuccess, SimpleNamespace(name=b"Fake Orin (nvgpu)\x00\x00", major=8, minor=7)


def cudaMalloc(size: int):
    _record("cudaMalloc", size)
    if size <= 0:
        return cudaError_t.cudaErrorInvalidValue, 0
    ptr = _next[0]
    _next[0] += (size + 255) // 256 * 256 + 256
    MEMORY[ptr] = bytearray(size)
    return cudaError_t.cudaSuccess, ptr


def cudaFree(ptr: int):
    _record("cudaFree", ptr)
    if MEMORY.pop(ptr, None) is None:
        return (cudaError_t.cudaErrorInvalidDevicePointer,)
    return (cudaError_t.cudaSuccess,)


def cudaStreamCreate():
    handle = 0x5000 + len(CALLS)
    STREAMS.add(handle)
    _record("cudaStreamCreate", handle)
    return cudaError_t.cudaSuccess, cudaStream_t(handle)


def _check_stream(stream) -> None:
    if int(stream) not in STREAMS:
        raise AssertionError(f"stream {int(stream):#x} was not created or is destroyed")


def cudaStreamSynchronize(stream):
    _check_stream(stream)
    _record("cudaStreamSynchronize", int(stream))
    return (cudaError_t.cudaSuccess,)


def cudaStreamDestroy(stream):
    _check_stream(stream)
    STREAMS.discard(int(stream))
    _record("cudaStreamDestroy", int(stream))
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream):
    _check_stream(stream)
    _record("cudaMemcpyAsync", kind.name, count)
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        device_bytes(dst, count)[:] = ctypes.string_at(src, count)
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        ctypes.memmove(dst, bytes(device_bytes(src, count)), count)
    else:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (cudaError_t.cudaSuccess,)
