#include "warp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "resize.hpp"
#include "simd.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRRES_WARP_AVX2 1
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define CRRES_WARP_NEON 1
#include <arm_neon.h>
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


// What a SIMD row writes: either normalised float planes (CHW) or interleaved uint8 (HWC). Defined on every
// architecture: the row callbacks build one whether or not a vector path is compiled in.
struct RowOutput {
    float* planes[3] = {nullptr, nullptr, nullptr};  // per input channel, already at this row
    float scale[3] = {1.f, 1.f, 1.f}, bias[3] = {0.f, 0.f, 0.f};
    std::uint8_t* hwc = nullptr;  // this row, when writing uint8
    int hwc_channel[3] = {0, 1, 2};
};

// Interior rows are sampled several pixels at a time where the build has a vector path (simd.hpp): AVX2+FMA on
// x86-64 (8 pixels, checked at run time, so the module still loads on any x86-64) and NEON on aarch64
// (4 pixels). Coordinates, weights, lerps and normalisation are in vectors. NEON's arithmetic is the scalar
// loop's (same float coordinates and lerps), so the two agree up to FMA rounding. AVX2 takes the same float
// coordinates but lerps along x in Q15 fixed point (vpmaddwd: one instruction instead of two conversions, a
// subtraction and an FMA per channel and row), the weight rounded to 1/32768: within 255 / 65536 = 0.004 grey
// levels of the float lerp, and equal to it wherever the source x is >= 256 (a float there has at most 15
// fractional bits: the weight is exact, and so is the float lerp, which needs at most 8 + 15 bits); the lerp
// along y and the normalisation stay in float.
#ifdef CRRES_WARP_AVX2

// The 8 bytes at p in every qword (vpbroadcastq from memory: a load, no shuffle).
__attribute__((target("avx2,fma"))) inline __m256i broadcast8(const std::uint8_t* p) {
    std::int64_t v;
    std::memcpy(&v, p, 8);
    return _mm256_set1_epi64x(v);
}

// Qwords = the 8 bytes at base + offsets[i], i = a, b, c, d: a gather from broadcasts and blends, which run on
// more ports than shuffles (vpgatherdd, and 4-byte loads staged through memory then read as one vector, were
// both slower here).
__attribute__((target("avx2,fma"))) inline __m256i gather8(const std::uint8_t* base, std::int32_t a, std::int32_t b,
                                                            std::int32_t c, std::int32_t d) {
    return _mm256_blend_epi32(_mm256_blend_epi32(broadcast8(base + a), broadcast8(base + b), 0x0C),
                              _mm256_blend_epi32(broadcast8(base + c), broadcast8(base + d), 0xC0), 0xF0);
}

// 8 pixels of 3 float planes to interleaved uint8 at dst (rounded, clamped to [0, 255]); channel[c] is plane
// c's byte in a pixel. Shared by the bilinear and bicubic AVX2 paths.
__attribute__((target("avx2,fma"), always_inline)) inline void store_hwc8(const __m256 v[3], const int channel[3],
                                                            std::uint8_t* dst) {
    alignas(32) std::int32_t q[3][8];
    const __m256 half = _mm256_set1_ps(0.5f), hi = _mm256_set1_ps(255.f);
    for (int c = 0; c < 3; ++c) {
        const __m256 r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v[c], half), _mm256_setzero_ps()), hi);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q[c]), _mm256_cvttps_epi32(r));
    }
    for (int k = 0; k < 8; ++k)
        for (int c = 0; c < 3; ++c) dst[k * 3 + channel[c]] = static_cast<std::uint8_t>(q[c][k]);
}

// Pixels per block of interior_row_avx2's coordinate pass (its buffers live on the stack).
constexpr int kRowBlock = 128;
// interior_row_avx2 prefetches the taps of every 4th pixel this many output rows ahead: for faces larger than the
// crop each output row reads source rows no earlier row read, which otherwise arrive from L2/L3 only as the
// loads ask for them (the kernel is 1.19x faster with it on bench_preprocess's faces; 2-4 rows ahead and every
// 2nd-8th pixel all within a few % of that; without it, loads kept inside L1 made it ~1.37x faster).
constexpr double kPrefetchRows = 3.0;

template <bool Hwc>
__attribute__((target("avx2,fma"))) int interior_row_avx2_impl(const ImageU8View& src, float m0, float m3, float rx,
                                                                float ry, int out_w, const RowOutput& out,
                                                                std::ptrdiff_t ahead) {
    const int n8 = out_w & ~7;
    const __m256i stride = _mm256_set1_epi32(static_cast<int>(src.row_stride));
    const __m256 vm0 = _mm256_set1_ps(m0), vm3 = _mm256_set1_ps(m3);
    const __m256 vrx = _mm256_set1_ps(rx), vry = _mm256_set1_ps(ry);
    // vpshufb masks to dwords of one channel's (left, right) taps as int16, a = bytes 0-7, b = bytes 8-15 of a
    // half: taps01 -> [a c0, a c1, b c0, b c1]; taps2a -> [a c2, b c2, 0, 0]; taps2b -> [0, 0, a c2, b c2].
    const char z = -1;
    const __m256i taps01 = _mm256_setr_epi8(0, z, 3, z, 1, z, 4, z, 8, z, 11, z, 9, z, 12, z,
                                            0, z, 3, z, 1, z, 4, z, 8, z, 11, z, 9, z, 12, z);
    const __m256i taps2a = _mm256_setr_epi8(2, z, 5, z, 10, z, 13, z, z, z, z, z, z, z, z, z,
                                            2, z, 5, z, 10, z, 13, z, z, z, z, z, z, z, z, z);
    const __m256i taps2b = _mm256_setr_epi8(z, z, z, z, z, z, z, z, 2, z, 5, z, 10, z, 13, z,
                                            z, z, z, z, z, z, z, z, 2, z, 5, z, 10, z, 13, z);
    const __m256 q15 = _mm256_set1_ps(32768.f);
    const __m256i bit15 = _mm256_set1_epi32(0x8000);
    // Locals, so the uint8 stores below cannot make the compiler reload them (char stores alias everything).
    const std::uint8_t* const row0 = src.data;
    const std::uint8_t* const row1 = src.data + src.row_stride;
    __m256 scale[3], bias[3];
    float* planes[3];
    int channel[3];
    for (int c = 0; c < 3; ++c) {
        scale[c] = _mm256_set1_ps(out.scale[c] * (-1.f / 32768.f));  // exact: a power of 2 (the Q15 sums' unit)
        bias[c] = _mm256_set1_ps(out.bias[c]);
        planes[c] = out.planes[c];
        channel[c] = out.hwc_channel[c];
    }
    std::uint8_t* const hwc = out.hwc;
    // A block's coordinates first, then its samples: a group's loads then wait on no arithmetic, so the loads
    // of several groups are in flight together (36 -> 20 us per face here).
    alignas(32) std::int32_t offsets[kRowBlock];
    alignas(32) std::int32_t pairs[kRowBlock];
    alignas(32) float fys[kRowBlock];
    __m256 xs = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
    const __m256 eight = _mm256_set1_ps(8.f);
    for (int x0 = 0; x0 < n8; x0 += kRowBlock) {
        const int n = std::min(kRowBlock, n8 - x0);
        for (int i = 0; i < n; i += 8, xs = _mm256_add_ps(xs, eight)) {
            const __m256 sx = _mm256_fmadd_ps(vm0, xs, vrx), sy = _mm256_fmadd_ps(vm3, xs, vry);
            const __m256i ix = _mm256_cvttps_epi32(sx), iy = _mm256_cvttps_epi32(sy);  // (no clamp: see the caller)
            // Weight of the right tap w = round(32768 fx) in [0, 32768]; a pixel's vpmaddwd weights are the int16
            // pair (w - 32768, -w), negated so that both ends fit int16. Its sum with the taps (L, R) is then
            // -(32768 L + w (R - L)), exact in int32 and in float (|.| <= 255 * 32768 < 2^24).
            const __m256i w = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(sx, _mm256_cvtepi32_ps(ix)), q15));
            _mm256_store_si256(reinterpret_cast<__m256i*>(pairs + i),
                               _mm256_sub_epi32(_mm256_xor_si256(w, bit15), _mm256_slli_epi32(w, 16)));
            _mm256_store_ps(fys + i, _mm256_sub_ps(sy, _mm256_cvtepi32_ps(iy)));
            _mm256_store_si256(reinterpret_cast<__m256i*>(offsets + i),
                               _mm256_add_epi32(_mm256_mullo_epi32(iy, stride),
                                                _mm256_add_epi32(ix, _mm256_add_epi32(ix, ix))));
        }
        for (int i = 0; i < n; i += 8) {
            // Both taps of a pixel's source row are one 8-byte load: a holds pixels {0, 1 | 4, 5}, b {2, 3 | 6, 7}
            // as qwords. Channels 0 and 1 then come out as (pixel, channel) pairs, [0 c0, 0 c1, 1 c0, 1 c1 | 4 .. 5]
            // from a and [2 .. 3 | 6 .. 7] from b, channel 2 in pixel order; one vshufps each sorts 0 and 1 out at
            // the end, after the lerp along y has run on all lanes.
            const std::int32_t* o = offsets + i;
            for (int k = 0; k < 8; k += 4) {  // (addresses as integers: they may lie outside the frame)
                _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(row0 + o[k]) + ahead),
                             _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(row1 + o[k]) + ahead),
                             _MM_HINT_T0);
            }
            const __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(pairs + i));
            const __m256i pa = _mm256_unpacklo_epi32(p, p), pb = _mm256_unpackhi_epi32(p, p);
            __m256 t[2][3];  // per source row: the lerps along x in units of -1/32768 (pair layouts as above)
            for (int j = 0; j < 2; ++j) {
                const std::uint8_t* row = j == 0 ? row0 : row1;
                const __m256i a = gather8(row, o[0], o[1], o[4], o[5]);
                const __m256i b = gather8(row, o[2], o[3], o[6], o[7]);
                t[j][0] = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_shuffle_epi8(a, taps01), pa));
                t[j][1] = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_shuffle_epi8(b, taps01), pb));
                t[j][2] = _mm256_cvtepi32_ps(_mm256_madd_epi16(
                    _mm256_blend_epi32(_mm256_shuffle_epi8(a, taps2a), _mm256_shuffle_epi8(b, taps2b), 0xCC), p));
            }
            const __m256 fy = _mm256_load_ps(fys + i);
            const __m256 fys3[3] = {_mm256_unpacklo_ps(fy, fy), _mm256_unpackhi_ps(fy, fy), fy};
            __m256 u[3];
            for (int k = 0; k < 3; ++k) u[k] = _mm256_fmadd_ps(fys3[k], _mm256_sub_ps(t[1][k], t[0][k]), t[0][k]);
            __m256 v[3] = {_mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)), u[2]};
            if constexpr (Hwc)  // (the float output has the unit folded into its scale)
                for (int c = 0; c < 3; ++c) v[c] = _mm256_mul_ps(v[c], _mm256_set1_ps(-1.f / 32768.f));
            const int x = x0 + i;
            if constexpr (!Hwc) {
                for (int c = 0; c < 3; ++c) _mm256_storeu_ps(planes[c] + x, _mm256_fmadd_ps(v[c], scale[c], bias[c]));
            } else {
                store_hwc8(v, channel, hwc + static_cast<std::ptrdiff_t>(x) * 3);
            }
        }
    }
    return n8;
}

// Samples pixels [0, n8) of an interior row, n8 = out_w rounded down to 8; returns n8. Requires
// (H - 1) * row_stride + 3 * W < 2^31 (int32 offsets) and, with no index clamp here, that the row's float
// coordinates truncate to 0 <= ix <= W - 2, 0 <= iy <= H - 2 and, since the 8-byte loads read 2 bytes past a
// pixel's right tap, ix <= W - 3 (the bytes stay in the row) or iy <= H - 3 (they fall in the next row): the
// caller checks that on the row's endpoints. The output kind is chosen once per row, not per group.
__attribute__((target("avx2,fma"))) int interior_row_avx2(const ImageU8View& src, float m0, float m3, float rx,
                                                           float ry, int out_w, const RowOutput& out,
                                                           std::ptrdiff_t ahead) {
    return out.hwc == nullptr ? interior_row_avx2_impl<false>(src, m0, m3, rx, ry, out_w, out, ahead)
                              : interior_row_avx2_impl<true>(src, m0, m3, rx, ry, out_w, out, ahead);
}
#endif

#ifdef CRRES_WARP_NEON
// 4 pixels of 3 float planes to interleaved uint8 at dst (rounded, clamped to [0, 255]); channel[c] is plane
// c's byte in a pixel. Shared by the bilinear and bicubic NEON paths.
inline void store_hwc4(const float32x4_t v[3], const int channel[3], std::uint8_t* dst) {
    alignas(16) std::int32_t q[3][4];
    const float32x4_t half = vdupq_n_f32(0.5f), hi = vdupq_n_f32(255.f), lo = vdupq_n_f32(0.f);
    for (int c = 0; c < 3; ++c)
        vst1q_s32(q[c], vcvtq_s32_f32(vminq_f32(vmaxq_f32(vaddq_f32(v[c], half), lo), hi)));
    for (int i = 0; i < 4; ++i)
        for (int c = 0; c < 3; ++c) dst[i * 3 + channel[c]] = static_cast<std::uint8_t>(q[c][i]);
}

// Samples pixels [0, n4) of an interior row, n4 = out_w rounded down to 4; returns n4. Same contract and
// arithmetic as interior_row_avx2 (truncating conversions, clamped indices, fused lerps); byte k of each
// staged 4-byte tap is taken with a shift and mask instead of a byte shuffle.
int interior_row_neon(const ImageU8View& src, float m0, float m3, float rx, float ry, int out_w,
                      const RowOutput& out) {
    const int n4 = out_w & ~3;
    const int32x4_t max_ix = vdupq_n_s32(src.width - 2), max_iy = vdupq_n_s32(src.height - 2);
    const int32x4_t zero = vdupq_n_s32(0), three = vdupq_n_s32(3);
    const int32x4_t stride = vdupq_n_s32(static_cast<std::int32_t>(src.row_stride));
    const float32x4_t vm0 = vdupq_n_f32(m0), vm3 = vdupq_n_f32(m3);
    const float32x4_t vrx = vdupq_n_f32(rx), vry = vdupq_n_f32(ry);
    const uint32x4_t low_byte = vdupq_n_u32(0xFFu);
    int32x4_t shift[4];  // right shifts by 8 k bits (negative left shifts) taking byte k
    for (int k = 0; k < 4; ++k) shift[k] = vdupq_n_s32(-8 * k);
    alignas(16) std::int32_t offsets[4];
    alignas(16) std::uint32_t taps[4][4];  // 00, 01 (from +2), 10, 11 (from +2) of 4 pixels
    alignas(16) const float first_xs[4] = {0.f, 1.f, 2.f, 3.f};
    float32x4_t xs = vld1q_f32(first_xs);
    const float32x4_t four = vdupq_n_f32(4.f);
    for (int x = 0; x < n4; x += 4, xs = vaddq_f32(xs, four)) {
        const float32x4_t sx = vfmaq_f32(vrx, vm0, xs), sy = vfmaq_f32(vry, vm3, xs);
        const int32x4_t ix = vminq_s32(vmaxq_s32(vcvtq_s32_f32(sx), zero), max_ix);
        const int32x4_t iy = vminq_s32(vmaxq_s32(vcvtq_s32_f32(sy), zero), max_iy);
        const float32x4_t fx = vsubq_f32(sx, vcvtq_f32_s32(ix)), fy = vsubq_f32(sy, vcvtq_f32_s32(iy));
        vst1q_s32(offsets, vmlaq_s32(vmulq_s32(ix, three), iy, stride));
        for (int i = 0; i < 4; ++i) {
            const std::uint8_t* p = src.data + offsets[i];
            std::memcpy(&taps[0][i], p, 4);
            std::memcpy(&taps[1][i], p + 2, 4);
            std::memcpy(&taps[2][i], p + src.row_stride, 4);
            std::memcpy(&taps[3][i], p + src.row_stride + 2, 4);
        }
        const uint32x4_t g00 = vld1q_u32(taps[0]), g01 = vld1q_u32(taps[1]);
        const uint32x4_t g10 = vld1q_u32(taps[2]), g11 = vld1q_u32(taps[3]);
        float32x4_t v[3];
        for (int c = 0; c < 3; ++c) {
            const float32x4_t p00 = vcvtq_f32_u32(vandq_u32(vshlq_u32(g00, shift[c]), low_byte));
            const float32x4_t p01 = vcvtq_f32_u32(vandq_u32(vshlq_u32(g01, shift[c + 1]), low_byte));
            const float32x4_t p10 = vcvtq_f32_u32(vandq_u32(vshlq_u32(g10, shift[c]), low_byte));
            const float32x4_t p11 = vcvtq_f32_u32(vandq_u32(vshlq_u32(g11, shift[c + 1]), low_byte));
            const float32x4_t top = vfmaq_f32(p00, fx, vsubq_f32(p01, p00));
            const float32x4_t bottom = vfmaq_f32(p10, fx, vsubq_f32(p11, p10));
            v[c] = vfmaq_f32(top, fy, vsubq_f32(bottom, top));
        }
        if (out.hwc == nullptr) {
            for (int c = 0; c < 3; ++c)
                vst1q_f32(out.planes[c] + x, vfmaq_f32(vdupq_n_f32(out.bias[c]), v[c], vdupq_n_f32(out.scale[c])));
        } else {
            store_hwc4(v, out.hwc_channel, out.hwc + static_cast<std::ptrdiff_t>(x) * 3);
        }
    }
    return n4;
}
#endif

// Visits every output pixel once, row-major: sink(y, x, v) receives v in the source's channel order.
// Rows whose two endpoints lie inside the image are entirely inside (the map is affine and the interior is
// convex), so they run a branch-free loop (vectorised where the build has a SIMD path; row_output(y) says
// where that loop writes); the index clamp there only guards against float rounding.
template <typename Sink, typename RowOutputFor>
void warp_bilinear(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w, Sink&& sink,
                   RowOutputFor&& row_output) {
    const bool can_fast = src.width >= 2 && src.height >= 2;
#if defined(CRRES_WARP_AVX2) || defined(CRRES_WARP_NEON)
    const double last_byte = static_cast<double>(src.height - 1) * src.row_stride + 3.0 * src.width;
    const bool simd = can_fast && simd_active() != SimdPath::scalar && src.row_stride > 0 &&
                      last_byte < static_cast<double>(std::numeric_limits<int>::max());
#else
    (void)row_output;  // no vector path in this build
#endif
    const int max_ix = src.width - 2, max_iy = src.height - 2;
    const float m0 = static_cast<float>(m[0]), m3 = static_cast<float>(m[3]);
#if defined(CRRES_WARP_AVX2)
    // Byte distance, in the frame, from a source pixel to the one kPrefetchRows output rows further down.
    const std::ptrdiff_t ahead =
        static_cast<std::ptrdiff_t>(std::lround(std::clamp(kPrefetchRows * m[4], -1e6, 1e6))) * src.row_stride +
        3 * static_cast<std::ptrdiff_t>(std::lround(std::clamp(kPrefetchRows * m[1], -1e6, 1e6)));
#endif
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
#if defined(CRRES_WARP_AVX2)
        // interior_row_avx2 does not clamp its indices: the row's float coordinates (m0, m3, rx, ry rounded to
        // float, one FMA) are within 2^-24 (|m0| x + |rx| + |sx|) of the exact ones, far less than `slack`, so
        // exact endpoints that keep `slack` off the bounds keep every float coordinate inside them. The row also
        // keeps off the last source row or off the last two columns (its 8-byte loads); one that does neither (a
        // face in the frame's bottom-right corner) takes the scalar loop.
        const double end_x = m[0] * last + row_x, end_y = m[3] * last + row_y;
        const double slack = kInteriorMargin + 0x1p-22 * ((std::fabs(m[0]) + std::fabs(m[3])) * last +
                                                          std::fabs(row_x) + std::fabs(row_y) + src.width + src.height);
        const bool clear = simd && std::min(row_x, end_x) >= slack && std::min(row_y, end_y) >= slack &&
                           std::max(row_x, end_x) <= src.width - 1 - slack &&
                           std::max(row_y, end_y) <= src.height - 1 - slack;
        if (clear && (std::max(row_y, end_y) <= src.height - 2 - slack ||
                      std::max(row_x, end_x) <= src.width - 2 - slack))
            x = interior_row_avx2(src, m0, m3, rx, ry, out_w, row_output(y), ahead);
#elif defined(CRRES_WARP_NEON)
        if (simd) x = interior_row_neon(src, m0, m3, rx, ry, out_w, row_output(y));
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

#if defined(__GNUC__) || defined(__clang__)
#define CRRES_INLINE inline __attribute__((always_inline))
#else
#define CRRES_INLINE inline
#endif

// Bicubic sampling (Keys a = -0.5, resize.hpp's kernel) under the map, antialiased where it shrinks: with
// k = source pixels per output pixel > 1 the kernel is widened by k and its weights renormalised, as PIL and
// torch do along an axis. Zeros outside the frame, as the bilinear warp.
constexpr double kMaxCubicWidening = 8.0;
// Shrinks by less than this factor are interpolated without widening the kernel: the matched warp shrinks by
// r / round(r), under 2 % for every r >= 25, and the widened kernel (5 x 5 taps, per-pixel weights) costs
// ~20x the 4 x 4 interpolation for a change in the weights of under 2 %.
constexpr double kMinCubicWidening = 1.02;
constexpr int kMaxCubicTaps = 4 * static_cast<int>(kMaxCubicWidening) + 1;

// Weights of the integer positions strictly within 2k of `centre`, divided by their sum; writes the first
// position and returns the count (<= kMaxCubicTaps).
inline int cubic_weights(double centre, double k, int& first, float* w) {
    const double support = 2.0 * k;
    const int lo = static_cast<int>(std::floor(centre - support)) + 1;
    const int n = std::min(static_cast<int>(std::ceil(centre + support)) - lo, kMaxCubicTaps);
    double taps[kMaxCubicTaps];
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        taps[i] = keys_cubic((lo + i - centre) / k);
        total += taps[i];
    }
    for (int i = 0; i < n; ++i) w[i] = static_cast<float>(total != 0.0 ? taps[i] / total : 0.0);
    first = lo;
    return n;
}

// Keys a = -0.5 at distance d: the inner piece (d < 1) and the outer piece (1 <= d < 2). Templates, so the
// same code runs on floats and on vectors of floats.
template <typename T>
CRRES_INLINE T keys_inner(T d) { return (1.5f * d - 2.5f) * d * d + 1.f; }
template <typename T>
CRRES_INLINE T keys_outer(T d) { return ((-0.5f * d + 2.5f) * d - 4.f) * d + 2.f; }

// The 4 interpolation weights of positions i - 1 .. i + 2 at fraction t = x - i in [0, 1) (they sum to 1).
template <typename T>
CRRES_INLINE void cubic4(T t, T w[4]) {
    w[0] = keys_outer(1.f + t);
    w[1] = keys_inner(t);
    w[2] = keys_inner(1.f - t);
    w[3] = keys_outer(2.f - t);
}

// Source pixels [x0, x1) x [y0, y1) as floats, 4 per pixel (the 3 channels and a 0), converted once per crop:
// a pixel is then one 4-float vector and the 16 taps of an output pixel are 16 vector loads and FMAs.
struct FloatRegion {
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    std::ptrdiff_t stride = 0;  // floats per row
    const float* data = nullptr;

    // Whether the 4 x 4 taps around (ix, iy) (ix - 1 .. ix + 2) are in the region.
    bool holds(int ix, int iy) const { return ix - 1 >= x0 && ix + 2 < x1 && iy - 1 >= y0 && iy + 2 < y1; }
    const float* at(int x, int y) const { return data + (y - y0) * stride + static_cast<std::ptrdiff_t>(x - x0) * 4; }
};

// The source bounding box of the output grid's taps (4 x 4 around each mapped centre), clipped to the frame.
CRRES_INLINE FloatRegion float_region(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w,
                                      std::vector<float>& buffer) {
    double lo_x = kCoordLimit, hi_x = -kCoordLimit, lo_y = kCoordLimit, hi_y = -kCoordLimit;
    for (int corner = 0; corner < 4; ++corner) {
        const double x = (corner & 1) ? out_w - 1 : 0, y = (corner & 2) ? out_h - 1 : 0;
        const double sx = std::clamp(m[0] * x + m[1] * y + m[2], -double{kCoordLimit}, double{kCoordLimit});
        const double sy = std::clamp(m[3] * x + m[4] * y + m[5], -double{kCoordLimit}, double{kCoordLimit});
        lo_x = std::min(lo_x, sx), hi_x = std::max(hi_x, sx), lo_y = std::min(lo_y, sy), hi_y = std::max(hi_y, sy);
    }
    FloatRegion r;
    r.x0 = static_cast<int>(std::clamp(std::floor(lo_x) - 1.0, 0.0, double(src.width)));
    r.x1 = static_cast<int>(std::clamp(std::floor(hi_x) + 3.0, 0.0, double(src.width)));
    r.y0 = static_cast<int>(std::clamp(std::floor(lo_y) - 1.0, 0.0, double(src.height)));
    r.y1 = static_cast<int>(std::clamp(std::floor(hi_y) + 3.0, 0.0, double(src.height)));
    if (r.x1 <= r.x0 || r.y1 <= r.y0) {
        r.x1 = r.x0;  // holds() is false everywhere
        return r;
    }
    const int w = r.x1 - r.x0;
    r.stride = static_cast<std::ptrdiff_t>(w) * 4;
    buffer.resize(static_cast<std::size_t>(r.stride) * (r.y1 - r.y0));
    for (int y = r.y0; y < r.y1; ++y) {
        const std::uint8_t* in = src.row(y) + static_cast<std::ptrdiff_t>(r.x0) * 3;
        float* out = buffer.data() + (y - r.y0) * r.stride;
        for (int i = 0; i < w; ++i, in += 3, out += 4) {
            out[0] = in[0];
            out[1] = in[1];
            out[2] = in[2];
            out[3] = 0.f;
        }
    }
    r.data = buffer.data();
    return r;
}

#if defined(__GNUC__) || defined(__clang__)
// Four floats / ints in one SSE or NEON register through the compilers' vector extension (both baseline ISAs).
using F32x4 = float __attribute__((vector_size(16)));
using I32x4 = std::int32_t __attribute__((vector_size(16)));

CRRES_INLINE F32x4 load4(const float* p) {
    F32x4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// One output pixel from the 4 x 4 pixels at p (rows `stride` floats apart): v = sum_j wy[j] sum_i wx[i] P(i, j).
CRRES_INLINE F32x4 cubic_pixel(const float* p, std::ptrdiff_t stride, const float wx[4], const float wy[4]) {
    F32x4 v = {0.f, 0.f, 0.f, 0.f};
    for (int j = 0; j < 4; ++j, p += stride)
        v += wy[j] * (wx[0] * load4(p) + wx[1] * load4(p + 4) + wx[2] * load4(p + 8) + wx[3] * load4(p + 12));
    return v;
}
#endif

// Interpolated pixel at (fx, fy) whose taps are in the region (region.holds(ix, iy), ix/iy the truncations).
CRRES_INLINE void interpolate(const FloatRegion& region, float fx, float fy, int ix, int iy, float v[3]) {
    float wx[4], wy[4];
    cubic4(fx - static_cast<float>(ix), wx);
    cubic4(fy - static_cast<float>(iy), wy);
    const float* p = region.at(ix - 1, iy - 1);
#if defined(__GNUC__) || defined(__clang__)
    const F32x4 out = cubic_pixel(p, region.stride, wx, wy);
    for (int c = 0; c < 3; ++c) v[c] = out[c];
#else
    for (int c = 0; c < 3; ++c) v[c] = 0.f;
    for (int j = 0; j < 4; ++j, p += region.stride)
        for (int c = 0; c < 3; ++c) v[c] += wy[j] * (wx[0] * p[c] + wx[1] * p[4 + c] + wx[2] * p[8 + c] + wx[3] * p[12 + c]);
#endif
}

// Samples one output pixel with zeros outside the frame, the kernel widened by k >= 1 (the general path:
// borders, shrinking maps, coordinates out of float range).
inline void sample_general(const ImageU8View& src, double sx, double sy, double k, float v[3]) {
    float wx[kMaxCubicTaps], wy[kMaxCubicTaps];
    sx = std::clamp(sx, -double{kCoordLimit}, double{kCoordLimit});
    sy = std::clamp(sy, -double{kCoordLimit}, double{kCoordLimit});
    int x0 = 0, y0 = 0;
    const int nx = cubic_weights(sx, k, x0, wx), ny = cubic_weights(sy, k, y0, wy);
    const int i_lo = std::max(0, -x0), i_hi = std::min(nx, src.width - x0);
    const int j_lo = std::max(0, -y0), j_hi = std::min(ny, src.height - y0);
    for (int c = 0; c < 3; ++c) v[c] = 0.f;
    for (int j = j_lo; j < j_hi; ++j) {
        const std::uint8_t* p = src.row(y0 + j) + static_cast<std::ptrdiff_t>(x0) * 3;
        float h[3] = {0.f, 0.f, 0.f};
        for (int i = i_lo; i < i_hi; ++i)
            for (int c = 0; c < 3; ++c) h[c] += wx[i] * static_cast<float>(p[i * 3 + c]);
        for (int c = 0; c < 3; ++c) v[c] += wy[j] * h[c];
    }
}

#ifdef CRRES_WARP_AVX2
// Keys a = -0.5, inner piece 1.5 d^3 - 2.5 d^2 + 1 and outer piece ((-0.5 d + 2.5) d - 4) d + 2, 8 lanes.
__attribute__((target("avx2,fma"))) inline __m256 inner(__m256 d) {
    const __m256 a = _mm256_fmsub_ps(_mm256_set1_ps(1.5f), d, _mm256_set1_ps(2.5f));
    return _mm256_fmadd_ps(_mm256_mul_ps(a, d), d, _mm256_set1_ps(1.f));
}
__attribute__((target("avx2,fma"))) inline __m256 outer(__m256 d) {
    const __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(-0.5f), d, _mm256_set1_ps(2.5f));
    return _mm256_fmadd_ps(_mm256_fmsub_ps(a, d, _mm256_set1_ps(4.f)), d, _mm256_set1_ps(2.f));
}

// Bicubic interpolation of 8 consecutive output pixels of a row straight from the uint8 frame, when all their
// taps are inside it (else returns false and writes nothing). Per tap row, each pixel's 4 taps (12 bytes) are
// one 16-byte load; an 8 x 16 byte transpose (20 unpacks) turns them into the 12 tap columns x channels as
// 8-lane vectors, weighted with the pixels' own weights in FMAs.
__attribute__((target("avx2,fma"))) bool bicubic_group_avx2(const ImageU8View& src, float m0, float m3, float rx,
                                                             float ry, int x, const RowOutput& out) {
    const __m256 xs = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)),
                                    _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f));
    const __m256 fx = _mm256_fmadd_ps(_mm256_set1_ps(m0), xs, _mm256_set1_ps(rx));
    const __m256 fy = _mm256_fmadd_ps(_mm256_set1_ps(m3), xs, _mm256_set1_ps(ry));
    const __m256i ix = _mm256_cvttps_epi32(fx), iy = _mm256_cvttps_epi32(fy);  // INT_MIN when out of range
    alignas(32) std::int32_t ixs[8], iys[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(ixs), ix);
    _mm256_store_si256(reinterpret_cast<__m256i*>(iys), iy);
    // Truncation is monotone along the row, so the first and last pixel bound the group. Taps ix - 1 .. ix + 2
    // and the 16-byte load from ix - 1 stay inside the frame's rows iy - 1 .. iy + 2.
    for (int i : {0, 7})
        if (ixs[i] < 1 || ixs[i] > src.width - 5 || iys[i] < 1 || iys[i] > src.height - 3) return false;
    const __m256 tx = _mm256_sub_ps(fx, _mm256_cvtepi32_ps(ix)), ty = _mm256_sub_ps(fy, _mm256_cvtepi32_ps(iy));
    const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f);
    const __m256 wx[4] = {outer(_mm256_add_ps(one, tx)), inner(tx), inner(_mm256_sub_ps(one, tx)),
                          outer(_mm256_sub_ps(two, tx))};
    const __m256 wy[4] = {outer(_mm256_add_ps(one, ty)), inner(ty), inner(_mm256_sub_ps(one, ty)),
                          outer(_mm256_sub_ps(two, ty))};
    const std::uint8_t* base[8];
    for (int i = 0; i < 8; ++i) base[i] = src.row(iys[i] - 1) + static_cast<std::ptrdiff_t>(ixs[i] - 1) * 3;
    __m256 v[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    // vpshufb masks: dword p of a 128-bit half <- byte 4 d + p, zero-extended (d = the source dword).
    __m256i dword_bytes[4];
    for (int d = 0; d < 4; ++d)
        dword_bytes[d] = _mm256_or_si256(_mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3), _mm256_set1_epi32(4 * d)),
                                         _mm256_set1_epi32(static_cast<int>(0x80808000u)));
    for (int j = 0; j < 4; ++j) {
        const std::ptrdiff_t off = j * src.row_stride;
        // y[k]: pixel k's 16 bytes in the low half, pixel k + 4's in the high half (128-bit broadcasts are plain
        // loads; the blend is not a shuffle). The transpose then works on both halves at once: 7 unpacks and
        // 12 in-half byte shuffles per row instead of 26 unpacks and 12 cross-half widenings.
        __m256i y[4];
        for (int k = 0; k < 4; ++k)
            y[k] = _mm256_blend_epi32(
                _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base[k] + off))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base[k + 4] + off))), 0xF0);
        const __m256i a0 = _mm256_unpacklo_epi8(y[0], y[1]), a1 = _mm256_unpackhi_epi8(y[0], y[1]);
        const __m256i a2 = _mm256_unpacklo_epi8(y[2], y[3]), a3 = _mm256_unpackhi_epi8(y[2], y[3]);
        // quads[q], dword d of each half: byte 4 q + d of its 4 pixels (0-3 low, 4-7 high).
        const __m256i quads[3] = {_mm256_unpacklo_epi16(a0, a2), _mm256_unpackhi_epi16(a0, a2),
                                  _mm256_unpacklo_epi16(a1, a3)};
        // Byte k of the 8 pixels' blocks (byte 3 i + c: tap column i, channel c), converted where it is used
        // (fewer live registers than converting all 12 first).
#define CRRES_COL(k) _mm256_cvtepi32_ps(_mm256_shuffle_epi8(quads[(k) / 4], dword_bytes[(k) % 4]))
        for (int c = 0; c < 3; ++c) {
            __m256 h = _mm256_mul_ps(wx[0], CRRES_COL(c));
            h = _mm256_fmadd_ps(wx[1], CRRES_COL(3 + c), h);
            h = _mm256_fmadd_ps(wx[2], CRRES_COL(6 + c), h);
            h = _mm256_fmadd_ps(wx[3], CRRES_COL(9 + c), h);
            v[c] = _mm256_fmadd_ps(wy[j], h, v[c]);
        }
#undef CRRES_COL
    }
    if (out.hwc == nullptr) {
        for (int c = 0; c < 3; ++c)
            _mm256_storeu_ps(out.planes[c] + x, _mm256_fmadd_ps(v[c], _mm256_set1_ps(out.scale[c]),
                                                                _mm256_set1_ps(out.bias[c])));
    } else {
        store_hwc8(v, out.hwc_channel, out.hwc + static_cast<std::ptrdiff_t>(x) * 3);
    }
    return true;
}

// Groups per block of bicubic_row_avx2's coordinate pass (its buffers live on the stack).
constexpr int kCubicBlock = 16;

// Dwords of the int16 pairs (lo, hi), from dwords holding int16 values.
__attribute__((target("avx2,fma"))) inline __m256i pack16(__m256i lo, __m256i hi) {
    return _mm256_blend_epi16(lo, _mm256_slli_epi32(hi, 16), 0xAA);
}

// Bicubic interpolation of a whole row of float output (CHW) whose taps are all inside the frame, 8 pixels at a
// time (groups at 0, 8, ...; the last one ends at out_w). Requires out_w >= 8, every pixel's taps and 16-byte
// loads inside the frame (ix in [1, W - 5], iy in [1, H - 3] for the row's float coordinates; the caller checks
// the row's ends) and (H - 1) * row_stride + 3 * W < 2^31 (int32 offsets). As bilinear's interior rows:
// a block's coordinates and weights first, then its samples, so a group's loads wait on no arithmetic. The
// interpolation along x is Q15 fixed point: the taps (int16) times the x weights rounded to 1/32768 (negated, so
// that 1 fits int16; the outer weight w0 takes the rounding so that the four sum to exactly 1 and flat regions
// stay exact) in one vpmaddwd per pair of taps, then along y in float as before. Per tap row that is 6 vpmaddwd,
// 3 conversions and 3 FMAs instead of 12 conversions and 15 multiply-adds; the weights' rounding moves a value by
// at most 255 * 6 / 65536 * 1.15 = 0.027 grey levels (the tests allow 0.05 against float64). uint8 output keeps
// bicubic_group_avx2's float weights: rounded to integers, errors of this size would flip values at .5 often
// enough for the matched warp's F_up to turn two flips into a 2-level difference.
__attribute__((target("avx2,fma"))) void bicubic_row_avx2(const ImageU8View& src, float m0, float m3, float rx,
                                                           float ry, int out_w, const RowOutput& out) {
    const int groups = (out_w + 7) / 8;
    const __m256i stride = _mm256_set1_epi32(static_cast<int>(src.row_stride));
    const __m256 vm0 = _mm256_set1_ps(m0), vm3 = _mm256_set1_ps(m3);
    const __m256 vrx = _mm256_set1_ps(rx), vry = _mm256_set1_ps(ry);
    const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f), q15 = _mm256_set1_ps(-32768.f);
    const __m256i minus_one = _mm256_set1_epi32(-32768);
    // After the transpose below, q[n] holds byte 4 n + d of pixel p (p = 0..3 per 128-bit half) at byte 4 d + p.
    // vpshufb masks to dwords of int16 tap pairs: both from one q (bytes d = 0 and 3), or the low / high half
    // of a pair from byte d.
    const char z = -1;
    const __m256i pair03 = _mm256_setr_epi8(0, z, 12, z, 1, z, 13, z, 2, z, 14, z, 3, z, 15, z,
                                            0, z, 12, z, 1, z, 13, z, 2, z, 14, z, 3, z, 15, z);
    const __m256i lo1 = _mm256_setr_epi8(4, z, z, z, 5, z, z, z, 6, z, z, z, 7, z, z, z,
                                         4, z, z, z, 5, z, z, z, 6, z, z, z, 7, z, z, z);
    const __m256i lo2 = _mm256_setr_epi8(8, z, z, z, 9, z, z, z, 10, z, z, z, 11, z, z, z,
                                         8, z, z, z, 9, z, z, z, 10, z, z, z, 11, z, z, z);
    const __m256i hi1 = _mm256_setr_epi8(z, z, 4, z, z, z, 5, z, z, z, 6, z, z, z, 7, z,
                                         z, z, 4, z, z, z, 5, z, z, z, 6, z, z, z, 7, z);
    const __m256i hi2 = _mm256_setr_epi8(z, z, 8, z, z, z, 9, z, z, z, 10, z, z, z, 11, z,
                                         z, z, 8, z, z, z, 9, z, z, z, 10, z, z, z, 11, z);
    const std::uint8_t* const data = src.data;
    const std::ptrdiff_t row_stride = src.row_stride;
    __m256 scale[3], bias[3];
    float* planes[3];
    for (int c = 0; c < 3; ++c) {
        scale[c] = _mm256_set1_ps(out.scale[c] * (-1.f / 32768.f));  // exact: a power of 2 (the Q15 sums' unit)
        bias[c] = _mm256_set1_ps(out.bias[c]);
        planes[c] = out.planes[c];
    }
    alignas(32) std::int32_t offsets[kCubicBlock][8];
    alignas(32) std::int32_t w01[kCubicBlock][8], w23[kCubicBlock][8], w12[kCubicBlock][8], w03[kCubicBlock][8];
    alignas(32) float wys[kCubicBlock][4][8];
    for (int g0 = 0; g0 < groups; g0 += kCubicBlock) {
        const int n = std::min(kCubicBlock, groups - g0);
        for (int g = 0; g < n; ++g) {
            const int x = std::min(8 * (g0 + g), out_w - 8);
            const __m256 xs = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)),
                                            _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f));
            const __m256 fx = _mm256_fmadd_ps(vm0, xs, vrx), fy = _mm256_fmadd_ps(vm3, xs, vry);
            const __m256i ix = _mm256_cvttps_epi32(fx), iy = _mm256_cvttps_epi32(fy);
            const __m256 tx = _mm256_sub_ps(fx, _mm256_cvtepi32_ps(ix)), ty = _mm256_sub_ps(fy, _mm256_cvtepi32_ps(iy));
            const __m256i n1 = _mm256_cvtps_epi32(_mm256_mul_ps(inner(tx), q15));
            const __m256i n2 = _mm256_cvtps_epi32(_mm256_mul_ps(inner(_mm256_sub_ps(one, tx)), q15));
            const __m256i n3 = _mm256_cvtps_epi32(_mm256_mul_ps(outer(_mm256_sub_ps(two, tx)), q15));
            const __m256i n0 = _mm256_sub_epi32(minus_one, _mm256_add_epi32(n1, _mm256_add_epi32(n2, n3)));
            _mm256_store_si256(reinterpret_cast<__m256i*>(w01[g]), pack16(n0, n1));
            _mm256_store_si256(reinterpret_cast<__m256i*>(w23[g]), pack16(n2, n3));
            _mm256_store_si256(reinterpret_cast<__m256i*>(w12[g]), pack16(n1, n2));
            _mm256_store_si256(reinterpret_cast<__m256i*>(w03[g]), pack16(n0, n3));
            _mm256_store_ps(wys[g][0], outer(_mm256_add_ps(one, ty)));
            _mm256_store_ps(wys[g][1], inner(ty));
            _mm256_store_ps(wys[g][2], inner(_mm256_sub_ps(one, ty)));
            _mm256_store_ps(wys[g][3], outer(_mm256_sub_ps(two, ty)));
            const __m256i ix3 = _mm256_add_epi32(ix, _mm256_add_epi32(ix, ix));
            _mm256_store_si256(reinterpret_cast<__m256i*>(offsets[g]),
                               _mm256_add_epi32(_mm256_mullo_epi32(_mm256_sub_epi32(iy, _mm256_set1_epi32(1)), stride),
                                                _mm256_sub_epi32(ix3, _mm256_set1_epi32(3))));
        }
        for (int g = 0; g < n; ++g) {
            const std::int32_t* o = offsets[g];
            __m256 v[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            const __m256i W01 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w01[g]));
            const __m256i W23 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w23[g]));
            const __m256i W12 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w12[g]));
            const __m256i W03 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w03[g]));
            for (int j = 0; j < 4; ++j) {
                const std::uint8_t* row = data + j * row_stride;
                // y[k]: pixel k's 16 bytes (its 4 taps, 12 bytes) in the low half, pixel k + 4's in the high half.
                __m256i y[4];
                for (int k = 0; k < 4; ++k)
                    y[k] = _mm256_blend_epi32(
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + o[k]))),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + o[k + 4]))),
                        0xF0);
                const __m256i a0 = _mm256_unpacklo_epi8(y[0], y[1]), a1 = _mm256_unpackhi_epi8(y[0], y[1]);
                const __m256i a2 = _mm256_unpacklo_epi8(y[2], y[3]), a3 = _mm256_unpackhi_epi8(y[2], y[3]);
                const __m256i q0 = _mm256_unpacklo_epi16(a0, a2), q1 = _mm256_unpackhi_epi16(a0, a2);
                const __m256i q2 = _mm256_unpacklo_epi16(a1, a3);
                // Byte 3 i + c is tap i of channel c. Pairs: c0 (t0, t1) in q0 and (t2, t3) from q1, q2; c1 (t1, t2)
                // in q1 and (t0, t3) from q0, q2; c2 (t2, t3) in q2 and (t0, t1) from q0, q1.
                const __m256i s0 = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_shuffle_epi8(q0, pair03), W01),
                    _mm256_madd_epi16(_mm256_or_si256(_mm256_shuffle_epi8(q1, lo2), _mm256_shuffle_epi8(q2, hi1)), W23));
                const __m256i s1 = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_shuffle_epi8(q1, pair03), W12),
                    _mm256_madd_epi16(_mm256_or_si256(_mm256_shuffle_epi8(q0, lo1), _mm256_shuffle_epi8(q2, hi2)), W03));
                const __m256i s2 = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_shuffle_epi8(q2, pair03), W23),
                    _mm256_madd_epi16(_mm256_or_si256(_mm256_shuffle_epi8(q0, lo2), _mm256_shuffle_epi8(q1, hi1)), W01));
                const __m256 wy = _mm256_load_ps(wys[g][j]);
                v[0] = _mm256_fmadd_ps(wy, _mm256_cvtepi32_ps(s0), v[0]);
                v[1] = _mm256_fmadd_ps(wy, _mm256_cvtepi32_ps(s1), v[1]);
                v[2] = _mm256_fmadd_ps(wy, _mm256_cvtepi32_ps(s2), v[2]);
            }
            const int x = std::min(8 * (g0 + g), out_w - 8);
            for (int c = 0; c < 3; ++c) _mm256_storeu_ps(planes[c] + x, _mm256_fmadd_ps(v[c], scale[c], bias[c]));
        }
    }
}
#endif

#ifdef CRRES_WARP_NEON
inline float32x4_t inner(float32x4_t d) {  // 1.5 d^3 - 2.5 d^2 + 1
    const float32x4_t a = vfmaq_f32(vdupq_n_f32(-2.5f), vdupq_n_f32(1.5f), d);
    return vfmaq_f32(vdupq_n_f32(1.f), vmulq_f32(a, d), d);
}
inline float32x4_t outer(float32x4_t d) {  // ((-0.5 d + 2.5) d - 4) d + 2
    const float32x4_t a = vfmaq_f32(vdupq_n_f32(2.5f), vdupq_n_f32(-0.5f), d);
    return vfmaq_f32(vdupq_n_f32(2.f), vfmaq_f32(vdupq_n_f32(-4.f), a, d), d);
}

// byte k of 4 pixels' 16-byte blocks, k = base .. base + 3, from the zipped block z (4 bytes per k), as floats.
inline void widen4(uint8x16_t z, float32x4_t* col) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(z)), hi = vmovl_high_u8(z);
    col[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    col[1] = vcvtq_f32_u32(vmovl_high_u16(lo));
    col[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    col[3] = vcvtq_f32_u32(vmovl_high_u16(hi));
}

// The NEON twin of bicubic_group_avx2: 4 consecutive output pixels, each pixel's 4 taps of a row one 16-byte
// load, a 4 x 16 byte transpose by zips, FMAs with the pixels' own weights. False (nothing written) unless all
// taps and loads are inside the frame.
bool bicubic_group_neon(const ImageU8View& src, float m0, float m3, float rx, float ry, int x, const RowOutput& out) {
    alignas(16) const float steps[4] = {0.f, 1.f, 2.f, 3.f};
    const float32x4_t xs = vaddq_f32(vdupq_n_f32(static_cast<float>(x)), vld1q_f32(steps));
    const float32x4_t fx = vfmaq_f32(vdupq_n_f32(rx), vdupq_n_f32(m0), xs);
    const float32x4_t fy = vfmaq_f32(vdupq_n_f32(ry), vdupq_n_f32(m3), xs);
    alignas(16) float fxs[4], fys[4];
    vst1q_f32(fxs, fx);
    vst1q_f32(fys, fy);
    // Truncation is monotone along the row: the first and last pixel bound the group (checked in scalar, so
    // NaN or huge coordinates fail here rather than saturate in the vector conversion).
    for (int i : {0, 3}) {
        if (!(std::fabs(fxs[i]) < kCoordLimit && std::fabs(fys[i]) < kCoordLimit)) return false;
        const int ix = static_cast<int>(fxs[i]), iy = static_cast<int>(fys[i]);
        if (ix < 1 || ix > src.width - 5 || iy < 1 || iy > src.height - 3) return false;
    }
    const int32x4_t ix = vcvtq_s32_f32(fx), iy = vcvtq_s32_f32(fy);
    const float32x4_t tx = vsubq_f32(fx, vcvtq_f32_s32(ix)), ty = vsubq_f32(fy, vcvtq_f32_s32(iy));
    const float32x4_t one = vdupq_n_f32(1.f), two = vdupq_n_f32(2.f);
    const float32x4_t wx[4] = {outer(vaddq_f32(one, tx)), inner(tx), inner(vsubq_f32(one, tx)), outer(vsubq_f32(two, tx))};
    const float32x4_t wy[4] = {outer(vaddq_f32(one, ty)), inner(ty), inner(vsubq_f32(one, ty)), outer(vsubq_f32(two, ty))};
    alignas(16) std::int32_t ixs[4], iys[4];
    vst1q_s32(ixs, ix);
    vst1q_s32(iys, iy);
    const std::uint8_t* base[4];
    for (int i = 0; i < 4; ++i) base[i] = src.row(iys[i] - 1) + static_cast<std::ptrdiff_t>(ixs[i] - 1) * 3;
    float32x4_t v[3] = {vdupq_n_f32(0.f), vdupq_n_f32(0.f), vdupq_n_f32(0.f)};
    for (int j = 0; j < 4; ++j) {
        const std::ptrdiff_t off = j * src.row_stride;
        const uint8x16_t b0 = vld1q_u8(base[0] + off), b1 = vld1q_u8(base[1] + off);
        const uint8x16_t b2 = vld1q_u8(base[2] + off), b3 = vld1q_u8(base[3] + off);
        const uint16x8_t z01lo = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), z01hi = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
        const uint16x8_t z23lo = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), z23hi = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
        float32x4_t col[12];  // col[3 i + c]: tap column i, channel c, 4 pixels
        widen4(vreinterpretq_u8_u16(vzip1q_u16(z01lo, z23lo)), col);
        widen4(vreinterpretq_u8_u16(vzip2q_u16(z01lo, z23lo)), col + 4);
        widen4(vreinterpretq_u8_u16(vzip1q_u16(z01hi, z23hi)), col + 8);
        for (int c = 0; c < 3; ++c) {
            float32x4_t h = vmulq_f32(wx[0], col[c]);
            h = vfmaq_f32(h, wx[1], col[3 + c]);
            h = vfmaq_f32(h, wx[2], col[6 + c]);
            h = vfmaq_f32(h, wx[3], col[9 + c]);
            v[c] = vfmaq_f32(v[c], wy[j], h);
        }
    }
    if (out.hwc == nullptr) {
        for (int c = 0; c < 3; ++c)
            vst1q_f32(out.planes[c] + x, vfmaq_f32(vdupq_n_f32(out.bias[c]), v[c], vdupq_n_f32(out.scale[c])));
    } else {
        store_hwc4(v, out.hwc_channel, out.hwc + static_cast<std::ptrdiff_t>(x) * 3);
    }
    return true;
}
#endif

// Always inlined, so each caller compiles the loops for its own target (the AVX2+FMA wrappers below).
// SimdGroups: interpolate several pixels at a time straight from the uint8 frame (bicubic_group_avx2, 8
// pixels; bicubic_group_neon, 4); instantiated where simd_active() allows it.
template <bool SimdGroups, typename Sink>
CRRES_INLINE void warp_bicubic(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w, double k,
                               std::vector<float>& region_buffer, const Sink& sink) {
    k = k < kMinCubicWidening ? 1.0 : std::min(k, kMaxCubicWidening);
    if (k > 1.0) {  // widened kernel: tiny crops only (matched.hpp), per-pixel weights
        for (int y = 0; y < out_h; ++y)
            for (int x = 0; x < out_w; ++x) {
                float v[3];
                sample_general(src, m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5], k, v);
                sink(y, x, v);
            }
        return;
    }
    // Interpolation reads 4 x 4 taps from a float copy of the face's region; taps past the frame take the
    // general path. Float coordinates along a row, as the bilinear warp; truncation equals floor wherever
    // holds() is true (coordinates >= 1 there).
    // With SimdGroups the float copy is made only when a pixel needs it (borders, rows under a group).
    FloatRegion region;
    bool have_region = false;
    const auto need_region = [&] {
        if (!have_region) region = float_region(src, m, out_h, out_w, region_buffer);
        have_region = true;
    };
    if (!SimdGroups) need_region();
    const float m0 = static_cast<float>(m[0]), m3 = static_cast<float>(m[3]);
    const auto truncate = [](float f) { return std::fabs(f) < kCoordLimit ? static_cast<int>(f) : -1; };
    const auto pixel = [&](int y, int x, float rx, float ry) {
        const float fx = m0 * static_cast<float>(x) + rx, fy = m3 * static_cast<float>(x) + ry;
        const int ix = truncate(fx), iy = truncate(fy);
        float v[3];
        need_region();
        if (region.holds(ix, iy))
            interpolate(region, fx, fy, ix, iy, v);
        else
            sample_general(src, m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5], 1.0, v);
        sink(y, x, v);
    };
#ifdef CRRES_WARP_AVX2
    // Rows whose every pixel has its taps (and 16-byte loads) inside the frame take bicubic_row_avx2. The row's
    // float coordinates are fma(m0, x, rx), monotone in x, so its two ends bound every pixel's truncated ones.
    const double last_byte = static_cast<double>(src.height - 1) * src.row_stride + 3.0 * src.width;
    const bool whole_rows = src.row_stride > 0 && last_byte < static_cast<double>(std::numeric_limits<int>::max());
    const auto taps_inside = [&](float x, float rx, float ry) {
        const float fx = std::fma(m0, x, rx), fy = std::fma(m3, x, ry);
        if (!(std::fabs(fx) < kCoordLimit && std::fabs(fy) < kCoordLimit)) return false;
        const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);
        return ix >= 1 && ix <= src.width - 5 && iy >= 1 && iy <= src.height - 3;
    };
#endif
    for (int y = 0; y < out_h; ++y) {
        const float rx = static_cast<float>(m[1] * y + m[2]), ry = static_cast<float>(m[4] * y + m[5]);
        int x = 0;
#if defined(CRRES_WARP_AVX2) || defined(CRRES_WARP_NEON)
        if constexpr (SimdGroups) {
#ifdef CRRES_WARP_AVX2
            constexpr int kGroup = 8;
            const auto group = bicubic_group_avx2;
#else
            constexpr int kGroup = 4;
            const auto group = bicubic_group_neon;
#endif
            if (out_w >= kGroup) {
                // Groups at 0, kGroup, ...; the last one ends at out_w, recomputing a few pixels rather than
                // leaving a tail.
                const RowOutput row = sink.row(y);
#ifdef CRRES_WARP_AVX2
                if (whole_rows && row.hwc == nullptr && taps_inside(0.f, rx, ry) && taps_inside(static_cast<float>(out_w - 1), rx, ry)) {
                    bicubic_row_avx2(src, m0, m3, rx, ry, out_w, row);
                    continue;
                }
#endif
                for (; x < out_w; x += kGroup) {
                    if (group(src, m0, m3, rx, ry, std::min(x, out_w - kGroup), row)) continue;
                    for (int i = x; i < std::min(x + kGroup, out_w); ++i) pixel(y, i, rx, ry);
                }
                continue;
            }
        }
#endif
#if defined(__GNUC__) || defined(__clang__)
        // 4 pixels at a time: coordinates and the 8 weight polynomials in vectors across the pixels. Along a row
        // the truncated coordinates are monotone, so the first and last pixel bound the group's taps.
        for (; x + 4 <= out_w; x += 4) {
            const F32x4 xs = {float(x), float(x + 1), float(x + 2), float(x + 3)};
            const F32x4 fx = m0 * xs + rx, fy = m3 * xs + ry;
            const int ix0 = truncate(fx[0]), iy0 = truncate(fy[0]), ix3 = truncate(fx[3]), iy3 = truncate(fy[3]);
            if (!region.holds(ix0, iy0) || !region.holds(ix3, iy3)) {
                for (int i = 0; i < 4; ++i) pixel(y, x + i, rx, ry);
                continue;
            }
            const I32x4 ix = __builtin_convertvector(fx, I32x4), iy = __builtin_convertvector(fy, I32x4);
            F32x4 wx[4], wy[4];
            cubic4(fx - __builtin_convertvector(ix, F32x4), wx);
            cubic4(fy - __builtin_convertvector(iy, F32x4), wy);
            for (int i = 0; i < 4; ++i) {
                const float wxi[4] = {wx[0][i], wx[1][i], wx[2][i], wx[3][i]};
                const float wyi[4] = {wy[0][i], wy[1][i], wy[2][i], wy[3][i]};
                const F32x4 out = cubic_pixel(region.at(ix[i] - 1, iy[i] - 1), region.stride, wxi, wyi);
                const float v[3] = {out[0], out[1], out[2]};
                sink(y, x + i, v);
            }
        }
#endif
        for (; x < out_w; ++x) pixel(y, x, rx, ry);
    }
}

// Writes normalised float planes (CHW): input channel c lands in output plane oc(c) with that channel's
// normalisation.
struct ChwOutput {
    float* planes[3];
    float scale[3], bias[3];
    int out_w;

    ChwOutput(float* out, int out_h, int width, const PixelNormalization& norm) : out_w(width) {
        const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(out_h) * out_w;
        for (int c = 0; c < 3; ++c) {
            const int oc = norm.swap_rb ? 2 - c : c;
            planes[c] = out + oc * plane;
            scale[c] = norm.scale[oc];
            bias[c] = norm.bias[oc];
        }
    }
    void operator()(int y, int x, const float v[3]) const {
        const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(y) * out_w + x;
        for (int c = 0; c < 3; ++c) planes[c][i] = v[c] * scale[c] + bias[c];
    }
    RowOutput row(int y) const {
        RowOutput r;
        for (int c = 0; c < 3; ++c) {
            r.planes[c] = planes[c] + static_cast<std::ptrdiff_t>(y) * out_w;
            r.scale[c] = scale[c];
            r.bias[c] = bias[c];
        }
        return r;
    }
};

// Writes interleaved uint8 (HWC), rounded to nearest, channels reversed when swap_rb.
struct HwcOutput {
    std::uint8_t* out;
    int out_w;
    int channel[3];

    HwcOutput(std::uint8_t* dst, int width, bool swap_rb)
        : out(dst), out_w(width), channel{swap_rb ? 2 : 0, 1, swap_rb ? 0 : 2} {}
    void operator()(int y, int x, const float v[3]) const {
        std::uint8_t* p = out + (static_cast<std::ptrdiff_t>(y) * out_w + x) * 3;
        // Bilinear weights are convex, bicubic ones overshoot: clamp before the cast.
        for (int c = 0; c < 3; ++c) p[channel[c]] = static_cast<std::uint8_t>(std::clamp(v[c] + 0.5f, 0.f, 255.f));
    }
    RowOutput row(int y) const {
        RowOutput r;
        r.hwc = out + static_cast<std::ptrdiff_t>(y) * out_w * 3;
        for (int c = 0; c < 3; ++c) r.hwc_channel[c] = channel[c];
        return r;
    }
};

#ifdef CRRES_WARP_AVX2
// The bicubic warp compiled for AVX2+FMA (3-operand and fused vector arithmetic: ~30 % fewer instructions per
// pixel than the x86-64 baseline build), used where simd_active() says so.
__attribute__((target("avx2,fma"))) void warp_bicubic_avx2(const ImageU8View& src, const Affine2x3& m, int out_h,
                                                            int out_w, double k, std::vector<float>& region,
                                                            const ChwOutput& sink) {
    warp_bicubic<true>(src, m, out_h, out_w, k, region, sink);
}
__attribute__((target("avx2,fma"))) void warp_bicubic_avx2(const ImageU8View& src, const Affine2x3& m, int out_h,
                                                            int out_w, double k, std::vector<float>& region,
                                                            const HwcOutput& sink) {
    warp_bicubic<true>(src, m, out_h, out_w, k, region, sink);
}
#endif

template <typename Sink>
void warp_bicubic_dispatch(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w,
                           std::vector<float>& region, const Sink& sink) {
    const double k = source_pixels_per_output_pixel(m);
#if defined(CRRES_WARP_AVX2)
    if (simd_active() == SimdPath::avx2) return warp_bicubic_avx2(src, m, out_h, out_w, k, region, sink);
#elif defined(CRRES_WARP_NEON)
    if (simd_active() == SimdPath::neon) return warp_bicubic<true>(src, m, out_h, out_w, k, region, sink);
#endif
    warp_bicubic<false>(src, m, out_h, out_w, k, region, sink);
}

}  // namespace

double source_pixels_per_output_pixel(const Affine2x3& dst_to_src) {
    return std::sqrt(std::fabs(dst_to_src[0] * dst_to_src[4] - dst_to_src[1] * dst_to_src[3]));
}

void warp_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                     const PixelNormalization& norm, float* out) {
    const ChwOutput sink(out, out_h, out_w, norm);
    warp_bilinear(src, dst_to_src, out_h, out_w, sink, [&](int y) { return sink.row(y); });
}

void warp_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                    std::uint8_t* out) {
    const HwcOutput sink(out, out_w, swap_rb);
    warp_bilinear(src, dst_to_src, out_h, out_w, sink, [&](int y) { return sink.row(y); });
}

void warp_bicubic_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                             const PixelNormalization& norm, float* out, std::vector<float>& scratch) {
    warp_bicubic_dispatch(src, dst_to_src, out_h, out_w, scratch, ChwOutput(out, out_h, out_w, norm));
}

void warp_bicubic_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                            std::uint8_t* out, std::vector<float>& scratch) {
    warp_bicubic_dispatch(src, dst_to_src, out_h, out_w, scratch, HwcOutput(out, out_w, swap_rb));
}

}  // namespace crres
