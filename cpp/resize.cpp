#include "resize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

namespace crres {
namespace {

constexpr double kCubicA = -0.5;  // Keys' parameter used by PIL and by torch's antialiased bicubic
constexpr double kCubicSupport = 2.0;
constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's Resample.c PRECISION_BITS

constexpr double kTriangleSupport = 1.0;

double triangle(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL's clip8 (>= 256 << 22 -> 255, <= 0 -> 0, else acc >> 22) without branches, so loops over it vectorise:
// the arithmetic shift maps (-2^22, 0] to -1 or 0, both clamped to 0.
inline std::uint8_t clip8(std::int32_t acc) {
    return static_cast<std::uint8_t>(std::min(std::max(acc >> kPrecisionBits, 0), 255));
}


}  // namespace

double keys_cubic(double x) {
    x = std::fabs(x);
    if (x < 1.0) return ((kCubicA + 2.0) * x - (kCubicA + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * kCubicA;
    return 0.0;
}

ResampleAxis make_resample_axis(int in_size, int out_size, ResampleFilter filter) {
    double (*kernel)(double) = filter == ResampleFilter::bicubic ? keys_cubic : triangle;
    const double kernel_support = filter == ResampleFilter::bicubic ? kCubicSupport : kTriangleSupport;
    ResampleAxis axis;
    axis.in_size = in_size;
    axis.out_size = out_size;
    // Mirrors PIL's precompute_coeffs (Resample.c) step by step, including its rounding of the window.
    const double scale = static_cast<double>(in_size) / out_size;
    const double filter_scale = std::max(scale, 1.0);
    const double support = kernel_support * filter_scale;
    axis.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
    axis.first.assign(out_size, 0);
    axis.count.assign(out_size, 0);
    axis.weights.assign(static_cast<std::size_t>(out_size) * axis.taps, 0.f);
    axis.fixed.assign(static_cast<std::size_t>(out_size) * axis.taps, 0);
    std::vector<double> k(axis.taps);
    for (int o = 0; o < out_size; ++o) {
        const double center = (o + 0.5) * scale;
        const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
        const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
        const int n = std::max(hi - lo, 0);
        double total = 0.0;
        for (int i = 0; i < n; ++i) {
            k[i] = kernel((i + lo - center + 0.5) / filter_scale);
            total += k[i];
        }
        for (int i = 0; i < n; ++i) {
            const double w = total != 0.0 ? k[i] / total : k[i];
            const std::size_t at = static_cast<std::size_t>(o) * axis.taps + i;
            axis.weights[at] = static_cast<float>(w);
            const double fixed = w * (1 << kPrecisionBits);
            axis.fixed[at] = static_cast<std::int32_t>(w < 0.0 ? -0.5 + fixed : 0.5 + fixed);
        }
        axis.first[o] = lo;
        axis.count[o] = n;
    }
    return axis;
}

namespace {

// Accumulator and rounding per element type: uint8 follows PIL's fixed point, float32 is exact arithmetic.
// int32 cannot overflow for uint8: |acc| <= 255 * sum|w| * 2^22 with sum|w| < 1.5 for this kernel.
struct FixedPointU8 {
    using Acc = std::int32_t;
    static Acc zero() { return Acc{1} << (kPrecisionBits - 1); }
    static const std::int32_t* weights(const ResampleAxis& a, int o) { return a.fixed.data() + std::size_t(o) * a.taps; }
    static std::uint8_t finish(Acc acc) { return clip8(acc); }
};
struct FloatF32 {
    using Acc = float;
    static Acc zero() { return 0.f; }
    static const float* weights(const ResampleAxis& a, int o) { return a.weights.data() + std::size_t(o) * a.taps; }
    static float finish(Acc acc) { return acc; }
};

// Horizontal pass: every row of `height` rows, `in_w` -> axis.out_size samples of `channels` interleaved values.
template <typename Traits, typename T>
void pass_horizontal(const T* src, T* dst, const ResampleAxis& axis, int height, int channels) {
    const std::ptrdiff_t c = channels, in_row = std::ptrdiff_t(axis.in_size) * c, out_row = std::ptrdiff_t(axis.out_size) * c;
    for (int y = 0; y < height; ++y) {
        const T* in = src + y * in_row;
        T* out = dst + y * out_row;
        for (int o = 0; o < axis.out_size; ++o) {
            const auto* k = Traits::weights(axis, o);
            const T* base = in + axis.first[o] * c;
            const int n = axis.count[o];
            for (int ch = 0; ch < channels; ++ch) {
                typename Traits::Acc acc = Traits::zero();
                for (int i = 0; i < n; ++i) acc += static_cast<typename Traits::Acc>(base[i * c + ch]) * k[i];
                out[o * c + ch] = Traits::finish(acc);
            }
        }
    }
}

// The vertical pass's row loops, compiled for AVX2 too where GCC can dispatch at load time (target_clones),
// since baseline x86-64 (SSE2) has no 32-bit integer multiply or min/max. On aarch64 GCC vectorises them with
// NEON at -O3 from the baseline ISA (-fopt-info-vec: 16-byte vectors), so degrade/resize need no hand-written
// NEON.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CRRES_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CRRES_CLONES
#endif

// One output row of a vertical pass with many taps: out[j] = finish(zero + sum_i w[i] in_i[j]) over `count`
// input rows `row_len` apart from `src`, accumulated tap by tap in `acc` (one call per output row: the taps'
// loop inside the clone, not a call per tap).
template <typename Traits, typename T>
inline __attribute__((always_inline)) void accumulate_rows_any(const T* src, std::ptrdiff_t row_len, int count,
                                                               const typename Traits::Acc* w,
                                                               typename Traits::Acc* __restrict acc,
                                                               T* __restrict out) {
    for (std::ptrdiff_t j = 0; j < row_len; ++j) acc[j] = Traits::zero();
    for (int i = 0; i < count; ++i) {
        const T* in = src + i * row_len;
        const typename Traits::Acc k = w[i];
        for (std::ptrdiff_t j = 0; j < row_len; ++j) acc[j] += static_cast<typename Traits::Acc>(in[j]) * k;
    }
    for (std::ptrdiff_t j = 0; j < row_len; ++j) out[j] = Traits::finish(acc[j]);
}

CRRES_CLONES void accumulate_rows(const std::uint8_t* src, std::ptrdiff_t row_len, int count, const std::int32_t* w,
                                  std::int32_t* acc, std::uint8_t* out) {
    accumulate_rows_any<FixedPointU8>(src, row_len, count, w, acc, out);
}
CRRES_CLONES void accumulate_rows(const float* src, std::ptrdiff_t row_len, int count, const float* w, float* acc,
                                  float* out) {
    accumulate_rows_any<FloatF32>(src, row_len, count, w, acc, out);
}

// An output row of a vertical pass with few taps (every upsampling: <= 5) in one loop: the sum over the N
// input rows in the same order as the accumulating loops, so results are identical, without their per-tap
// passes over a scratch row (which dominated small upsamplings: ~3x fewer instructions for 17 -> 112).
constexpr int kFusedTaps = 5;

template <int N, typename Traits, typename T>
inline __attribute__((always_inline)) void combine_rows_n(const T* const* rows, const typename Traits::Acc* w,
                                                          T* __restrict out, std::ptrdiff_t n) {
    // Local copies: uint8 stores may alias anything in memory, which would force reloads and block vectorising.
    const T* r[N > 0 ? N : 1] = {};
    typename Traits::Acc k[N > 0 ? N : 1] = {};
    for (int i = 0; i < N; ++i) r[i] = rows[i], k[i] = w[i];
    for (std::ptrdiff_t j = 0; j < n; ++j) {
        typename Traits::Acc acc = Traits::zero();
        for (int i = 0; i < N; ++i) acc += static_cast<typename Traits::Acc>(r[i][j]) * k[i];
        out[j] = Traits::finish(acc);
    }
}

template <typename Traits, typename T>
inline __attribute__((always_inline)) void combine_rows_any(const T* const* rows, const typename Traits::Acc* w,
                                                            int count, T* out, std::ptrdiff_t n) {
    switch (count) {
        case 0: return combine_rows_n<0, Traits>(rows, w, out, n);
        case 1: return combine_rows_n<1, Traits>(rows, w, out, n);
        case 2: return combine_rows_n<2, Traits>(rows, w, out, n);
        case 3: return combine_rows_n<3, Traits>(rows, w, out, n);
        case 4: return combine_rows_n<4, Traits>(rows, w, out, n);
        default: return combine_rows_n<5, Traits>(rows, w, out, n);
    }
}

CRRES_CLONES void combine_rows(const std::uint8_t* const* rows, const std::int32_t* w, int count, std::uint8_t* out,
                               std::ptrdiff_t n) {
    combine_rows_any<FixedPointU8>(rows, w, count, out, n);
}
CRRES_CLONES void combine_rows(const float* const* rows, const float* w, int count, float* out, std::ptrdiff_t n) {
    combine_rows_any<FloatF32>(rows, w, count, out, n);
}

// Vertical pass over rows of `row_len` values: accumulates whole input rows so the inner loop is contiguous.
template <typename Traits, typename T>
void pass_vertical(const T* src, T* dst, const ResampleAxis& axis, std::ptrdiff_t row_len,
                   std::vector<typename Traits::Acc>& acc) {
    if (axis.taps <= kFusedTaps) {  // upsampling and same-size axes: one loop per output row
        for (int o = 0; o < axis.out_size; ++o) {
            const T* rows[kFusedTaps];
            for (int i = 0; i < axis.count[o]; ++i) rows[i] = src + (axis.first[o] + i) * row_len;
            combine_rows(rows, Traits::weights(axis, o), axis.count[o], dst + o * row_len, row_len);
        }
        return;
    }
    acc.resize(static_cast<std::size_t>(row_len));
    for (int o = 0; o < axis.out_size; ++o)
        accumulate_rows(src + axis.first[o] * row_len, row_len, axis.count[o], Traits::weights(axis, o), acc.data(),
                        dst + o * row_len);
}

template <int C, typename T>
void transpose_n(const T* __restrict src, int rows, int cols, T* __restrict dst) {
    for (int x = 0; x < cols; ++x) {
        T* out = dst + static_cast<std::ptrdiff_t>(x) * rows * C;
        const T* in = src + static_cast<std::ptrdiff_t>(x) * C;
        for (int y = 0; y < rows; ++y, in += static_cast<std::ptrdiff_t>(cols) * C)
            for (int c = 0; c < C; ++c) out[y * C + c] = in[c];
    }
}

// rows x cols pixels of `channels` values -> cols x rows.
template <typename T>
void transpose_any(const T* src, int rows, int cols, int channels, T* dst) {
    if (channels == 1) return transpose_n<1>(src, rows, cols, dst);
    if (channels == 3) return transpose_n<3>(src, rows, cols, dst);
    for (int x = 0; x < cols; ++x)
        for (int y = 0; y < rows; ++y)
            for (int c = 0; c < channels; ++c)
                dst[(static_cast<std::ptrdiff_t>(x) * rows + y) * channels + c] =
                    src[(static_cast<std::ptrdiff_t>(y) * cols + x) * channels + c];
}

// Horizontal pass into scratch, then vertical pass into dst (PIL's order), skipping a pass whose axis keeps
// its size. On crop-sized images the horizontal pass runs as a vertical pass between two transposes: per
// output value the same integer (uint8) or ordered float sum, so the same result, but in vectorised row loops
// (AVX2 clones on x86-64, NEON on aarch64) instead of a scalar loop over taps and channels. Frames (the MTCNN
// pyramid) keep the direct pass, whose memory access suits large images.
constexpr long long kTurnedPassMaxPixels = 512 * 512;

template <typename Traits, typename T>
void resize_separable(const T* src, int channels, const ResampleAxis& rows, const ResampleAxis& cols, T* dst,
                      std::vector<T>& tmp, std::vector<T>& turned, std::vector<T>& turned_out,
                      std::vector<typename Traits::Acc>& acc) {
    const int in_h = rows.in_size, in_w = cols.in_size, out_w = cols.out_size;
    const bool horizontal = in_w != out_w, vertical = rows.in_size != rows.out_size;
    if (!horizontal && !vertical) {
        std::memcpy(dst, src, sizeof(T) * static_cast<std::size_t>(in_h) * in_w * channels);
        return;
    }
    const T* mid = src;
    if (horizontal) {
        T* target = dst;
        if (vertical) {
            tmp.resize(static_cast<std::size_t>(in_h) * out_w * channels);
            target = tmp.data();
        }
        if (static_cast<long long>(in_h) * in_w <= kTurnedPassMaxPixels) {
            turned.resize(static_cast<std::size_t>(in_w) * in_h * channels);
            turned_out.resize(static_cast<std::size_t>(out_w) * in_h * channels);
            transpose_any(src, in_h, in_w, channels, turned.data());
            pass_vertical<Traits>(turned.data(), turned_out.data(), cols, std::ptrdiff_t(in_h) * channels, acc);
            transpose_any(turned_out.data(), out_w, in_h, channels, target);
        } else {
            pass_horizontal<Traits>(src, target, cols, in_h, channels);
        }
        mid = target;
    }
    if (vertical) pass_vertical<Traits>(mid, dst, rows, std::ptrdiff_t(out_w) * channels, acc);
}

}  // namespace

void resize_u8(const std::uint8_t* src, int channels, const ResampleAxis& rows, const ResampleAxis& cols,
               std::uint8_t* dst, ResampleScratch& scratch) {
    resize_separable<FixedPointU8>(src, channels, rows, cols, dst, scratch.u8, scratch.u8_turned,
                                   scratch.u8_turned_out, scratch.acc_i32);
}

void resize_f32(const float* src, int channels, const ResampleAxis& rows, const ResampleAxis& cols, float* dst,
                ResampleScratch& scratch) {
    resize_separable<FloatF32>(src, channels, rows, cols, dst, scratch.f32, scratch.f32_turned,
                               scratch.f32_turned_out, scratch.acc_f32);
}

void resample_rows_u8(const std::uint8_t* src, std::ptrdiff_t row_len, const ResampleAxis& axis, std::uint8_t* dst,
                      ResampleScratch& scratch) {
    pass_vertical<FixedPointU8>(src, dst, axis, row_len, scratch.acc_i32);
}

void resample_rows_f32(const float* src, std::ptrdiff_t row_len, const ResampleAxis& axis, float* dst,
                       ResampleScratch& scratch) {
    pass_vertical<FloatF32>(src, dst, axis, row_len, scratch.acc_f32);
}

int degraded_side(int side, int width, int r) {
    if (side == width) return r;
    const long long scaled = (static_cast<long long>(side) * r + width / 2) / width;
    return static_cast<int>(std::max(1LL, scaled));
}

}  // namespace crres
