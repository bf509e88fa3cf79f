#include "simd.hpp"

#include <atomic>

namespace crres {
namespace {

std::atomic<bool> g_simd_enabled{true};

}  // namespace

SimdPath simd_available() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has ? SimdPath::avx2 : SimdPath::scalar;
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return SimdPath::neon;
#else
    return SimdPath::scalar;
#endif
}

SimdPath simd_active() {
    return g_simd_enabled.load(std::memory_order_relaxed) ? simd_available() : SimdPath::scalar;
}

void set_simd_enabled(bool enabled) { g_simd_enabled.store(enabled, std::memory_order_relaxed); }

const char* simd_path_name(SimdPath path) {
    switch (path) {
        case SimdPath::avx2: return "avx2+fma";
        case SimdPath::neon: return "neon";
        case SimdPath::scalar: break;
    }
    return "scalar";
}

}  // namespace crres
