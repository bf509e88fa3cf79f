#include "warp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace crres {
namespace {

// Source coordinates are clamped here before float->int conversion so that any finite transform is safe.
constexpr float kCoordLimit = 1.0e7f;
// Endpoint margin (px) that keeps a row's interior test valid despite float rounding between the endpoints.
constexpr double kInteriorMargin = 1.0e-3;

// Bilinear value of channel c at (sx, sy) with zeros outside the image; the slow path near and past borders.
inline void sample_bordered(const ImageU8View& src, float sx, float sy, float v[3]) {
    sx = std::clamp(sx, -kCoordLimit, kCoordLimit);
    sy = std::clamp(sy, -kCoordLimit, kCoordLimit);
    const float fx0 = std::floor(sx), fy0 = std::floor(sy);
    const int ix = static_cast<int>(fx0), iy = static_cast<int>(fy0);
    const float fx = sx - fx0, fy = sy - fy0;
    const bool x0_in = ix >= 0 && ix < src.width, x1_in = ix + 1 >= 0 && ix + 1 < src.width;
    const bool y0_in = iy >= 0 && iy < src.height, y1_in = iy + 1 >= 0 && iy + 1 < src.height;
    const std::uint8_t* r0 = y0_in ? src.row(iy) : nullptr;
    const std::uint8_t* r1 = y1_in ? src.row(iy + 1) : nullptr;
    for (int c = 0; c < 3; ++c) {
        const float p00 = (r0 && x0_in) ? r0[ix * 3 + c] : 0.f;
        const float p01 = (r0 && x1_in) ? r0[(ix + 1) * 3 + c] : 0.f;
        const float p10 = (r1 && x0_in) ? r1[ix * 3 + c] : 0.f;
        const float p11 = (r1 && x1_in) ? r1[(ix + 1) * 3 + c] : 0.f;
        const float top = p00 + fx * (p01 - p00), bottom = p10 + fx * (p11 - p10);
        v[c] = top + fy * (bottom - top);
    }
}

inline bool inside_interior(const ImageU8View& src, double sx, double sy) {
    return sx >= kInteriorMargin && sy >= kInteriorMargin && sx <= src.width - 1 - kInteriorMargin &&
           sy <= src.height - 1 - kInteriorMargin;
}


// Where the CPU has AVX2+FMA (checked at run time, so the module still loads on any x86-64 and builds on
// aarch64), interior rows are sampled 8 pixels at a time: coordinates, weights, lerps and normalisation in
// vectors, the 4 taps of each pixel fetched with scalar 4-byte loads into a staging block (measured faster than
// vpgatherdd here: 26 vs 38 us per face). The arithmetic is the scalar loop's (same float coordinates and
// lerps), so both paths give the same values up to FMA rounding.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRRES_WARP_AVX2 1

// What a SIMD row writes: either normalised float planes (CHW) or interleaved uint8 (HWC).
struct RowOutput {
    float* planes[3] = {nullptr, nullptr, nullptr};  // per input channel, already at this row
    float scale[3] = {1.f, 1.f, 1.f}, bias[3] = {0.f, 0.f, 0.f};
    std::uint8_t* hwc = nullptr;  // this row, when writing uint8
    int hwc_channel[3] = {0, 1, 2};
};

bool cpu_has_avx2_fma() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
}

// Samples pixels [0, n8) of an interior row, n8 = out_w rounded down to 8; returns n8. Requires
// (H - 1) * row_stride + 3 * W < 2^31 (int32 offsets). Taps right of the anchor are loaded from anchor + 2
// and read from bytes 1..3, so no 4-byte load reads past the image's last byte.
__attribute__((target("avx2,fma"))) int interior_row_avx2(const ImageU8View& src, float m0, float m3, float rx,
                                                           float ry, int out_w, const RowOutput& out) {
    const int n8 = out_w & ~7;
    const __m256i max_ix = _mm256_set1_epi32(src.width - 2), max_iy = _mm256_set1_epi32(src.height - 2);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i stride = _mm256_set1_epi32(static_cast<int>(src.row_stride));
    const __m256 vm0 = _mm256_set1_ps(m0), vm3 = _mm256_set1_ps(m3);
    const __m256 vrx = _mm256_set1_ps(rx), vry = _mm256_set1_ps(ry);
    // vpshufb masks taking byte k of every 32-bit lane, zero-extended (indices are per 128-bit half).
    const __m256i lane_first_byte = _mm256_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12);
    const __m256i zero_upper_bytes = _mm256_set1_epi32(static_cast<int>(0x80808000u));
    __m256i take[4];
    for (int k = 0; k < 4; ++k)
        take[k] = _mm256_or_si256(_mm256_add_epi32(lane_first_byte, _mm256_set1_epi32(k)), zero_upper_bytes);
    alignas(32) std::int32_t offsets[8];
    alignas(32) std::uint32_t taps[4][8];  // 00, 01 (from +2), 10, 11 (from +2) of 8 pixels
    __m256 xs = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
    const __m256 eight = _mm256_set1_ps(8.f);
    for (int x = 0; x < n8; x += 8, xs = _mm256_add_ps(xs, eight)) {
        const __m256 sx = _mm256_fmadd_ps(vm0, xs, vrx), sy = _mm256_fmadd_ps(vm3, xs, vry);
        const __m256i ix = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(sx), zero), max_ix);
        const __m256i iy = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(sy), zero), max_iy);
        const __m256 fx = _mm256_sub_ps(sx, _mm256_cvtepi32_ps(ix)), fy = _mm256_sub_ps(sy, _mm256_cvtepi32_ps(iy));
        const __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(iy, stride),
                                             _mm256_add_epi32(ix, _mm256_add_epi32(ix, ix)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(offsets), off);
        for (int i = 0; i < 8; ++i) {
            const std::uint8_t* p = src.data + offsets[i];
            std::memcpy(&taps[0][i], p, 4);
            std::memcpy(&taps[1][i], p + 2, 4);
            std::memcpy(&taps[2][i], p + src.row_stride, 4);
            std::memcpy(&taps[3][i], p + src.row_stride + 2, 4);
        }
        const __m256i g00 = _mm256_load_si256(reinterpret_cast<const __m256i*>(taps[0]));
        const __m256i g01 = _mm256_load_si256(reinterpret_cast<const __m256i*>(taps[1]));
        const __m256i g10 = _mm256_load_si256(reinterpret_cast<const __m256i*>(taps[2]));
        const __m256i g11 = _mm256_load_si256(reinterpret_cast<const __m256i*>(taps[3]));
        __m256 v[3];
        for (int c = 0; c < 3; ++c) {
            const __m256 p00 = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g00, take[c]));
            const __m256 p01 = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g01, take[c + 1]));
            const __m256 p10 = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g10, take[c]));
            const __m256 p11 = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g11, take[c + 1]));
            const __m256 top = _mm256_fmadd_ps(fx, _mm256_sub_ps(p01, p00), p00);
            const __m256 bottom = _mm256_fmadd_ps(fx, _mm256_sub_ps(p11, p10), p10);
            v[c] = _mm256_fmadd_ps(fy, _mm256_sub_ps(bottom, top), top);
        }
        if (out.hwc == nullptr) {
            for (int c = 0; c < 3; ++c)
                _mm256_storeu_ps(out.planes[c] + x, _mm256_fmadd_ps(v[c], _mm256_set1_ps(out.scale[c]),
                                                                    _mm256_set1_ps(out.bias[c])));
        } else {
            alignas(32) std::int32_t q[3][8];
            const __m256 half = _mm256_set1_ps(0.5f), hi = _mm256_set1_ps(255.f);
            for (int c = 0; c < 3; ++c) {
                const __m256 r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v[c], half), _mm256_setzero_ps()), hi);
                _mm256_store_si256(reinterpret_cast<__m256i*>(q[c]), _mm256_cvttps_epi32(r));
            }
            std::uint8_t* p = out.hwc + static_cast<std::ptrdiff_t>(x) * 3;
            for (int i = 0; i < 8; ++i)
                for (int c = 0; c < 3; ++c) p[i * 3 + out.hwc_channel[c]] = static_cast<std::uint8_t>(q[c][i]);
        }
    }
    return n8;
}
#endif

// Visits every output pixel once, row-major: sink(y, x, v) receives v in the source's channel order.
// Rows whose two endpoints lie inside the image are entirely inside (the map is affine and the interior is
// convex), so they run a branch-free loop (8-wide where AVX2 is present; row_output(y) says where that
// loop writes); the index clamp there only guards against float rounding.
template <typename Sink, typename RowOutputFor>
void warp_bilinear(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w, Sink&& sink,
                   RowOutputFor&& row_output) {
    const bool can_fast = src.width >= 2 && src.height >= 2;
#ifdef CRRES_WARP_AVX2
    const double last_byte = static_cast<double>(src.height - 1) * src.row_stride + 3.0 * src.width;
    const bool simd = can_fast && cpu_has_avx2_fma() && src.row_stride > 0 &&
                      last_byte < static_cast<double>(std::numeric_limits<int>::max());
#endif
    const int max_ix = src.width - 2, max_iy = src.height - 2;
    const float m0 = static_cast<float>(m[0]), m3 = static_cast<float>(m[3]);
    for (int y = 0; y < out_h; ++y) {
        const double row_x = m[1] * y + m[2], row_y = m[4] * y + m[5];
        const double last = static_cast<double>(out_w - 1);
        const bool interior = can_fast && inside_interior(src, row_x, row_y) &&
                              inside_interior(src, m[0] * last + row_x, m[3] * last + row_y);
        const float rx = static_cast<float>(row_x), ry = static_cast<float>(row_y);
        if (!interior) {
            for (int x = 0; x < out_w; ++x) {
                float v[3];
                sample_bordered(src, m0 * static_cast<float>(x) + rx, m3 * static_cast<float>(x) + ry, v);
                sink(y, x, v);
            }
            continue;
        }
        int x = 0;
#ifdef CRRES_WARP_AVX2
        if (simd) x = interior_row_avx2(src, m0, m3, rx, ry, out_w, row_output(y));
#endif
        for (; x < out_w; ++x) {
            const float sx = m0 * static_cast<float>(x) + rx, sy = m3 * static_cast<float>(x) + ry;
            const int ix = std::clamp(static_cast<int>(sx), 0, max_ix);
            const int iy = std::clamp(static_cast<int>(sy), 0, max_iy);
            const float fx = sx - static_cast<float>(ix), fy = sy - static_cast<float>(iy);
            const std::uint8_t* p0 = src.row(iy) + ix * 3;
            const std::uint8_t* p1 = p0 + src.row_stride;
            float v[3];
            for (int c = 0; c < 3; ++c) {
                const float top = p0[c] + fx * static_cast<float>(p0[c + 3] - p0[c]);
                const float bottom = p1[c] + fx * static_cast<float>(p1[c + 3] - p1[c]);
                v[c] = top + fy * (bottom - top);
            }
            sink(y, x, v);
        }
    }
}

}  // namespace

void warp_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                     const PixelNormalization& norm, float* out) {
    const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(out_h) * out_w;
    // Input channel c lands in output plane oc(c) and takes that output channel's normalisation.
    float* planes[3];
    float scale[3], bias[3];
    for (int c = 0; c < 3; ++c) {
        const int oc = norm.swap_rb ? 2 - c : c;
        planes[c] = out + oc * plane;
        scale[c] = norm.scale[oc];
        bias[c] = norm.bias[oc];
    }
    auto sink = [&](int y, int x, const float v[3]) {
        const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(y) * out_w + x;
        for (int c = 0; c < 3; ++c) planes[c][i] = v[c] * scale[c] + bias[c];
    };
    warp_bilinear(src, dst_to_src, out_h, out_w, sink, [&](int y) {
        RowOutput row;
        for (int c = 0; c < 3; ++c) {
            row.planes[c] = planes[c] + static_cast<std::ptrdiff_t>(y) * out_w;
            row.scale[c] = scale[c];
            row.bias[c] = bias[c];
        }
        return row;
    });
}

void warp_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                    std::uint8_t* out) {
    const int channel[3] = {swap_rb ? 2 : 0, 1, swap_rb ? 0 : 2};
    auto sink = [&](int y, int x, const float v[3]) {
        std::uint8_t* p = out + (static_cast<std::ptrdiff_t>(y) * out_w + x) * 3;
        // Bilinear weights are convex, so v is within [0, 255] up to rounding; clamp before the cast.
        for (int c = 0; c < 3; ++c) p[channel[c]] = static_cast<std::uint8_t>(std::clamp(v[c] + 0.5f, 0.f, 255.f));
    };
    warp_bilinear(src, dst_to_src, out_h, out_w, sink, [&](int y) {
        RowOutput row;
        row.hwc = out + static_cast<std::ptrdiff_t>(y) * out_w * 3;
        for (int c = 0; c < 3; ++c) row.hwc_channel[c] = channel[c];
        return row;
    });
}

}  // namespace crres
