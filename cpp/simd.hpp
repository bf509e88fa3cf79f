// Which vector path the kernels take. The path is chosen at build time per architecture: AVX2+FMA on x86-64
// (compiled with a target attribute and checked at run time, since the x86-64 baseline lacks it) and NEON on
// aarch64 (part of the ARMv8-A baseline, so always present). Tests and benchmarks can limit a process to the
// scalar loops at run time, to compare the paths in one build.
#pragma once

namespace crres {

enum class SimdPath { scalar, avx2, neon };

// The best path built into this binary and supported by this CPU.
SimdPath simd_available();

// The path the kernels take now: simd_available(), or scalar after set_simd_enabled(false).
SimdPath simd_active();

// Process-wide switch (thread-safe); false makes every kernel take its scalar loops.
void set_simd_enabled(bool enabled);

// "scalar", "avx2+fma" or "neon".
const char* simd_path_name(SimdPath path);

}  // namespace crres
