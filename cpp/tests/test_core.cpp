// C++ tests of the preprocessing kernels, for any architecture the core builds on (make test-cpp natively,
// make test-aarch64 cross-compiled and run under qemu-user). Every vector path (AVX2+FMA on x86-64, NEON on
// aarch64) and the scalar loops of the same build are held to an independent double-precision reference with
// the tolerances of tests/core: the float warp within 1e-2 grey levels on small frames and 5e-2 on Full-HD
// frames (float32 source coordinates), the uint8 warp within 1 level, float resampling within 4e-3.
// Prints the vector-vs-scalar time of the warp as a ratio (under qemu only the ratio means anything).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "matched.hpp"
#include "resize.hpp"
#include "simd.hpp"
#include "similarity.hpp"
#include "warp.hpp"

namespace {

using namespace crres;

int g_failures = 0;

void check(bool ok, const char* what, double got, double limit) {
    if (ok) return;
    ++g_failures;
    std::printf("FAIL %s (simd path %s): %.6g > %.6g\n", what, simd_path_name(simd_active()), got, limit);
}

struct Frame {
    std::vector<std::uint8_t> pixels;
    ImageU8View view;
};

Frame random_frame(std::mt19937& rng, int h, int w, int pad = 0) {
    Frame f;
    const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(w) * 3 + pad;  // pad > 0: a strided view
    f.pixels.resize(static_cast<std::size_t>(h) * stride);
    for (std::uint8_t& p : f.pixels) p = static_cast<std::uint8_t>(rng() & 255u);
    f.view = ImageU8View{f.pixels.data(), h, w, 3, stride};
    return f;
}

// Bilinear sample with zeros outside the frame (cv2.warpAffine INTER_LINEAR, BORDER_CONSTANT 0), in double.
double reference_sample(const ImageU8View& src, double sx, double sy, int c) {
    const double fx0 = std::floor(sx), fy0 = std::floor(sy);
    const int ix = static_cast<int>(fx0), iy = static_cast<int>(fy0);
    const double fx = sx - fx0, fy = sy - fy0;
    auto at = [&](int x, int y) -> double {
        if (x < 0 || y < 0 || x >= src.width || y >= src.height) return 0.0;
        return src.row(y)[x * 3 + c];
    };
    const double top = at(ix, iy) * (1 - fx) + at(ix + 1, iy) * fx;
    const double bottom = at(ix, iy + 1) * (1 - fx) + at(ix + 1, iy + 1) * fx;
    return top * (1 - fy) + bottom * fy;
}

Affine2x3 random_map(std::mt19937& rng, const ImageU8View& src, double scale_lo, double scale_hi, double inside) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const double s = scale_lo + (scale_hi - scale_lo) * u(rng), a = (u(rng) - 0.5) * 2.0 * 3.14159;
    // dst -> src: crop pixel x maps to s R x + t; t keeps a fraction `inside` of the maps within the frame.
    const double cx = src.width * (0.5 + (u(rng) - 0.5) * (u(rng) < inside ? 0.3 : 2.0));
    const double cy = src.height * (0.5 + (u(rng) - 0.5) * (u(rng) < inside ? 0.3 : 2.0));
    const double c = s * std::cos(a), sn = s * std::sin(a);
    return {c, -sn, cx - 20.0 * (c - sn), sn, c, cy - 20.0 * (sn + c)};
}

// The warp (float CHW and uint8 HWC) against the reference; returns the largest float error.
double test_warp_against_reference(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w, double tol_f32,
                                   const char* what) {
    PixelNormalization raw;
    std::vector<float> f32(static_cast<std::size_t>(3) * out_h * out_w);
    std::vector<std::uint8_t> u8(static_cast<std::size_t>(3) * out_h * out_w);
    warp_to_chw_f32(src, m, out_h, out_w, raw, f32.data());
    warp_to_hwc_u8(src, m, out_h, out_w, false, u8.data());
    double worst_f32 = 0.0, worst_u8 = 0.0;
    for (int y = 0; y < out_h; ++y)
        for (int x = 0; x < out_w; ++x)
            for (int c = 0; c < 3; ++c) {
                const double ref = reference_sample(src, m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5], c);
                const std::size_t i = static_cast<std::size_t>(y) * out_w + x;
                worst_f32 = std::max(worst_f32, std::fabs(f32[c * static_cast<std::size_t>(out_h) * out_w + i] - ref));
                // uint8 rounds: within 1 level of the reference (values within float error of .5 may go either way)
                worst_u8 = std::max(worst_u8, std::fabs(u8[i * 3 + c] - ref) - 0.5);
            }
    check(worst_f32 <= tol_f32, what, worst_f32, tol_f32);
    check(worst_u8 <= 1.0, what, worst_u8, 1.0);
    return worst_f32;
}

void test_warp(std::mt19937& rng) {
    for (int trial = 0; trial < 200; ++trial) {
        const int h = 2 + static_cast<int>(rng() % 90), w = 2 + static_cast<int>(rng() % 90);
        const Frame f = random_frame(rng, h, w, trial % 3 == 0 ? 5 : 0);
        const Affine2x3 m = random_map(rng, f.view, 0.1, 4.0, 0.7);
        test_warp_against_reference(f.view, m, 1 + static_cast<int>(rng() % 40), 1 + static_cast<int>(rng() % 40),
                                    1e-2, "warp vs reference, small frames");
    }
    const Frame hd = random_frame(rng, 1080, 1920);
    for (int trial = 0; trial < 12; ++trial) {
        const Affine2x3 m = random_map(rng, hd.view, 0.3, 3.0, 0.9);
        test_warp_against_reference(hd.view, m, 112, 112, 5e-2, "warp vs reference, Full-HD frame");
    }
}

// Crops whose last rows and columns sample the frame's last pixels, on frames with no padding after their last
// row: the AVX2 interior rows load 8 bytes per tap row, 2 past the right tap, and must choose index clamps that
// keep those loads inside the frame (under ASan a read past its end fails the test).
void test_warp_frame_corner(std::mt19937& rng) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int trial = 0; trial < 300; ++trial) {
        const int h = 3 + static_cast<int>(rng() % 60), w = 3 + static_cast<int>(rng() % 60);
        const Frame f = random_frame(rng, h, w);
        const int out_h = 1 + static_cast<int>(rng() % 40), out_w = 8 + static_cast<int>(rng() % 40);
        const double s = 0.2 + 1.8 * u(rng), a = (u(rng) - 0.5) * (trial % 2 ? 0.05 : 0.6);
        const double c = s * std::cos(a), sn = s * std::sin(a);
        // The crop's last pixel lands within 2 px of the frame's last one (inside or just past it).
        const double ex = w - 1 - 2.0 * u(rng), ey = h - 1 - 2.0 * u(rng);
        const Affine2x3 m = {c, -sn, ex - c * (out_w - 1) + sn * (out_h - 1),
                             sn, c, ey - sn * (out_w - 1) - c * (out_h - 1)};
        test_warp_against_reference(f.view, m, out_h, out_w, 1e-2, "warp vs reference, frame corner");
    }
}

// The same on frames up to 30,000 px wide, where float coordinates are ~2e-3 px off: the AVX2 interior rows do
// not clamp their indices but rely on the caller's margin, which grows with the coordinates (under ASan a read
// outside the frame fails the test). Values within 1 grey level (float coordinate rounding at x ~ 3e4).
void test_warp_wide_frame_edges(std::mt19937& rng) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int trial = 0; trial < 40; ++trial) {
        const bool wide = trial % 2 == 0;
        const int w = wide ? 8000 + static_cast<int>(rng() % 22000) : 3 + static_cast<int>(rng() % 8);
        const int h = wide ? 3 + static_cast<int>(rng() % 8) : 8000 + static_cast<int>(rng() % 22000);
        const Frame f = random_frame(rng, h, w);
        const int out_h = 1 + static_cast<int>(rng() % 8), out_w = 8 + static_cast<int>(rng() % 40);
        const double s = 0.2 + 1.8 * u(rng), a = (u(rng) - 0.5) * 0.02;
        const double c = s * std::cos(a), sn = s * std::sin(a);
        const double ex = w - 1 - 2.0 * u(rng), ey = h - 1 - 2.0 * u(rng);
        const Affine2x3 m = {c, -sn, ex - c * (out_w - 1) + sn * (out_h - 1),
                             sn, c, ey - sn * (out_w - 1) - c * (out_h - 1)};
        test_warp_against_reference(f.view, m, out_h, out_w, 1.0, "warp vs reference, wide frame edges");
    }
}

// Vector and scalar paths of this build against each other on interior rows (the only place they differ).
void test_simd_against_scalar(std::mt19937& rng) {
    const Frame hd = random_frame(rng, 1080, 1920);
    PixelNormalization norm;
    for (int c = 0; c < 3; ++c) norm.scale[c] = 1.f / 128.f, norm.bias[c] = -127.5f / 128.f;
    std::vector<float> fast(3 * 112 * 112), slow(fast.size());
    std::vector<std::uint8_t> fast8(3 * 112 * 112), slow8(fast8.size());
    double worst = 0.0;
    int worst8 = 0;
    for (int trial = 0; trial < 32; ++trial) {
        const Affine2x3 m = random_map(rng, hd.view, 0.3, 3.0, 1.0);
        set_simd_enabled(true);
        warp_to_chw_f32(hd.view, m, 112, 112, norm, fast.data());
        warp_to_hwc_u8(hd.view, m, 112, 112, true, fast8.data());
        set_simd_enabled(false);
        warp_to_chw_f32(hd.view, m, 112, 112, norm, slow.data());
        warp_to_hwc_u8(hd.view, m, 112, 112, true, slow8.data());
        set_simd_enabled(true);
        for (std::size_t i = 0; i < fast.size(); ++i) worst = std::max(worst, std::fabs(double(fast[i]) - slow[i]));
        for (std::size_t i = 0; i < fast8.size(); ++i) worst8 = std::max(worst8, std::abs(fast8[i] - slow8[i]));
    }
    check(worst * 128.0 <= 5e-2, "vector vs scalar warp (grey levels)", worst * 128.0, 5e-2);
    check(worst8 <= 1, "vector vs scalar uint8 warp", worst8, 1);
    // Small frames, where float coordinates carry ~1e-5 px of rounding: what is left between the paths is the
    // AVX2 path's Q15 lerp along x (weights rounded to 1/32768: at most 255 / 65536 = 0.0039 grey levels; NEON
    // lerps in float like the scalar loops).
    PixelNormalization raw;
    double worst_small = 0.0;
    for (int trial = 0; trial < 100; ++trial) {
        const Frame f = random_frame(rng, 24 + static_cast<int>(rng() % 60), 24 + static_cast<int>(rng() % 60));
        const Affine2x3 m = random_map(rng, f.view, 0.1, 0.5, 1.0);
        set_simd_enabled(true);
        warp_to_chw_f32(f.view, m, 40, 40, raw, fast.data());
        set_simd_enabled(false);
        warp_to_chw_f32(f.view, m, 40, 40, raw, slow.data());
        set_simd_enabled(true);
        for (std::size_t i = 0; i < 3 * 40 * 40; ++i)
            worst_small = std::max(worst_small, std::fabs(double(fast[i]) - slow[i]));
    }
    std::printf("vector vs scalar warp on small frames: %.5f grey levels at most\n", worst_small);
    check(worst_small <= 5e-3, "vector vs scalar warp, small frames (grey levels)", worst_small, 5e-3);
    // The matched warp's bicubic sampling (its own AVX2+FMA build on x86-64) on faces of 8-100 px.
    MatchedScratch scratch;
    worst = 0.0;
    worst8 = 0;
    for (int trial = 0; trial < 16; ++trial) {
        const Affine2x3 m = random_map(rng, hd.view, 8.0 / 112, 100.0 / 112, 1.0);
        const MatchedPlan plan = make_matched_plan(112, 112, matched_width(resolution_from_map(m, 112), 112));
        set_simd_enabled(true);
        warp_matched_to_chw_f32(hd.view, m, plan, 112, 112, norm, fast.data(), scratch);
        warp_matched_to_hwc_u8(hd.view, m, plan, 112, 112, false, fast8.data(), scratch);
        set_simd_enabled(false);
        warp_matched_to_chw_f32(hd.view, m, plan, 112, 112, norm, slow.data(), scratch);
        warp_matched_to_hwc_u8(hd.view, m, plan, 112, 112, false, slow8.data(), scratch);
        set_simd_enabled(true);
        for (std::size_t i = 0; i < fast.size(); ++i) worst = std::max(worst, std::fabs(double(fast[i]) - slow[i]));
        for (std::size_t i = 0; i < fast8.size(); ++i) worst8 = std::max(worst8, std::abs(fast8[i] - slow8[i]));
    }
    check(worst * 128.0 <= 5e-2, "vector vs scalar matched warp (grey levels)", worst * 128.0, 5e-2);
    check(worst8 <= 1, "vector vs scalar matched uint8 warp", worst8, 1);
}

// Antialiased bicubic resampling along one axis in double (PIL's precompute_coeffs), for the float path.
std::vector<double> reference_resize_1d(const std::vector<double>& in, int out_size) {
    const int in_size = static_cast<int>(in.size());
    const double scale = static_cast<double>(in_size) / out_size, fs = std::max(scale, 1.0), support = 2.0 * fs;
    std::vector<double> out(out_size);
    for (int o = 0; o < out_size; ++o) {
        const double centre = (o + 0.5) * scale;
        const int lo = std::max(static_cast<int>(centre - support + 0.5), 0);
        const int hi = std::min(static_cast<int>(centre + support + 0.5), in_size);
        double total = 0.0, acc = 0.0;
        for (int i = lo; i < hi; ++i) {
            const double k = keys_cubic((i - centre + 0.5) / fs);
            total += k;
            acc += k * in[i];
        }
        out[o] = total != 0.0 ? acc / total : 0.0;
    }
    return out;
}

void test_resize(std::mt19937& rng) {
    ResampleScratch scratch;
    for (int trial = 0; trial < 40; ++trial) {
        const int h = 1 + static_cast<int>(rng() % 120), w = 1 + static_cast<int>(rng() % 120);
        const int oh = 1 + static_cast<int>(rng() % 120), ow = 1 + static_cast<int>(rng() % 120);
        std::vector<float> src(static_cast<std::size_t>(h) * w);
        for (float& v : src) v = static_cast<float>(rng() % 256);
        std::vector<float> dst(static_cast<std::size_t>(oh) * ow);
        const ResampleAxis rows = make_resample_axis(h, oh), cols = make_resample_axis(w, ow);
        resize_f32(src.data(), 1, rows, cols, dst.data(), scratch);
        // reference: horizontal then vertical, in double
        std::vector<std::vector<double>> mid(h);
        for (int y = 0; y < h; ++y) {
            const std::vector<double> row(src.begin() + static_cast<std::ptrdiff_t>(y) * w,
                                          src.begin() + static_cast<std::ptrdiff_t>(y + 1) * w);
            mid[y] = w == ow ? row : reference_resize_1d(row, ow);
        }
        double worst = 0.0;
        for (int x = 0; x < ow; ++x) {
            std::vector<double> col(h);
            for (int y = 0; y < h; ++y) col[y] = mid[y][x];
            const std::vector<double> out = h == oh ? col : reference_resize_1d(col, oh);
            for (int y = 0; y < oh; ++y) worst = std::max(worst, std::fabs(dst[static_cast<std::size_t>(y) * ow + x] - out[y]));
        }
        check(worst <= 4e-3, "float resize vs reference", worst, 4e-3);
    }
}

// uint8 resize against a plain int64 implementation of PIL's fixed point with the same axes (horizontal pass,
// rounding to uint8, vertical pass): bit for bit, on every architecture (the vectorised row passes included).
std::uint8_t reference_clip8(std::int64_t acc) {
    constexpr int kBits = 22;
    acc >>= kBits;
    return static_cast<std::uint8_t>(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

void test_resize_u8(std::mt19937& rng) {
    ResampleScratch scratch;
    for (int trial = 0; trial < 60; ++trial) {
        const int h = 1 + static_cast<int>(rng() % 120), w = 1 + static_cast<int>(rng() % 120);
        const int oh = 1 + static_cast<int>(rng() % 120), ow = 1 + static_cast<int>(rng() % 120);
        const int channels = trial % 2 ? 3 : 1;
        std::vector<std::uint8_t> src(static_cast<std::size_t>(h) * w * channels);
        for (std::uint8_t& v : src) v = static_cast<std::uint8_t>(rng() & 255u);
        const ResampleAxis rows = make_resample_axis(h, oh), cols = make_resample_axis(w, ow);
        std::vector<std::uint8_t> got(static_cast<std::size_t>(oh) * ow * channels);
        resize_u8(src.data(), channels, rows, cols, got.data(), scratch);
        // reference: a pass is skipped when its axis keeps its size, as in the core
        std::vector<std::uint8_t> mid = src;
        if (w != ow) {
            mid.assign(static_cast<std::size_t>(h) * ow * channels, 0);
            for (int y = 0; y < h; ++y)
                for (int o = 0; o < ow; ++o)
                    for (int c = 0; c < channels; ++c) {
                        std::int64_t acc = std::int64_t{1} << 21;
                        for (int i = 0; i < cols.count[o]; ++i)
                            acc += std::int64_t{cols.fixed[static_cast<std::size_t>(o) * cols.taps + i]} *
                                   src[(static_cast<std::size_t>(y) * w + cols.first[o] + i) * channels + c];
                        mid[(static_cast<std::size_t>(y) * ow + o) * channels + c] = reference_clip8(acc);
                    }
        }
        std::vector<std::uint8_t> expected = mid;
        if (h != oh) {
            expected.assign(static_cast<std::size_t>(oh) * ow * channels, 0);
            for (int o = 0; o < oh; ++o)
                for (int x = 0; x < ow * channels; ++x) {
                    std::int64_t acc = std::int64_t{1} << 21;
                    for (int i = 0; i < rows.count[o]; ++i)
                        acc += std::int64_t{rows.fixed[static_cast<std::size_t>(o) * rows.taps + i]} *
                               mid[static_cast<std::size_t>(rows.first[o] + i) * ow * channels + x];
                    expected[static_cast<std::size_t>(o) * ow * channels + x] = reference_clip8(acc);
                }
        }
        int worst = 0;
        for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - expected[i]));
        check(worst == 0, "uint8 resize vs fixed-point reference", worst, 0);
    }
}

// A face that is F_down of a crop comes back through the matched warp as resize's F_up of it, bit for bit,
// and a flat face stays flat (every path's weights sum to 1).
void test_matched(std::mt19937& rng) {
    const Frame crop = random_frame(rng, 112, 112);
    ResampleScratch scratch;
    MatchedScratch matched;
    for (int r : {1, 5, 7, 16, 33, 100, 111}) {
        std::vector<std::uint8_t> small(static_cast<std::size_t>(r) * r * 3), expected(112 * 112 * 3), got(expected.size());
        resize_u8(crop.pixels.data(), 3, make_resample_axis(112, r), make_resample_axis(112, r), small.data(), scratch);
        resize_u8(small.data(), 3, make_resample_axis(r, 112), make_resample_axis(r, 112), expected.data(), scratch);
        const ImageU8View view{small.data(), r, r, 3, static_cast<std::ptrdiff_t>(r) * 3};
        const double s = r / 112.0, o = 0.5 * s - 0.5;  // crop -> small (pixel-area convention)
        const Affine2x3 crop_to_small = {s, 0.0, o, 0.0, s, o};
        const MatchedPlan plan = make_matched_plan(112, 112, matched_width(resolution_from_map(crop_to_small, 112), 112));
        check(plan.small_w == r, "matched width", plan.small_w, r);
        warp_matched_to_hwc_u8(view, crop_to_small, plan, 112, 112, false, got.data(), matched);
        int worst = 0;
        for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - expected[i]));
        check(worst == 0, "matched warp of F_down vs F_up", worst, 0);
    }
    std::vector<std::uint8_t> flat(200 * 200 * 3);
    for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<std::uint8_t>(i % 3 == 0 ? 10 : i % 3 == 1 ? 128 : 250);
    const ImageU8View flat_view{flat.data(), 200, 200, 3, 600};
    PixelNormalization raw;
    std::vector<float> out(3 * 112 * 112);
    for (double r : {1.4, 5.45, 10.3, 20.2, 80.1}) {
        const double s = r / 112.0, a = 0.4;
        const Affine2x3 m = {s * std::cos(a), -s * std::sin(a), 80.0, s * std::sin(a), s * std::cos(a), 60.0};
        const MatchedPlan plan = make_matched_plan(112, 112, matched_width(r, 112));
        warp_matched_to_chw_f32(flat_view, m, plan, 112, 112, raw, out.data(), matched);
        double worst = 0.0;
        for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 112 * 112; ++i)
                worst = std::max(worst, std::fabs(out[c * 112 * 112 + i] - (c == 0 ? 10.0 : c == 1 ? 128.0 : 250.0)));
        check(worst <= 1e-3, "flat face through the matched warp", worst, 1e-3);
    }
}

// Keys a = -0.5 at distance d (resize.hpp's kernel), in double.
double reference_keys(double d) {
    d = std::fabs(d);
    return d < 1.0 ? (1.5 * d - 2.5) * d * d + 1.0 : d < 2.0 ? ((-0.5 * d + 2.5) * d - 4.0) * d + 2.0 : 0.0;
}

// The direct bicubic warp (the default for faces smaller than the crop) against a double-precision 4 x 4 Keys
// warp with zeros outside the frame: within tests/core's 0.05 grey levels (the AVX2 rows' Q15 weights along x
// allow 0.027), uint8 within 1 level of the rounded reference, and a flat face stays flat to 1e-3.
void test_bicubic(std::mt19937& rng) {
    PixelNormalization raw;
    std::vector<float> f32(3 * 112 * 112);
    std::vector<std::uint8_t> u8(3 * 112 * 112);
    std::vector<float> scratch;
    double worst = 0.0, worst_u8 = 0.0;
    for (int trial = 0; trial < 40; ++trial) {
        const Frame f = random_frame(rng, 40 + static_cast<int>(rng() % 80), 40 + static_cast<int>(rng() % 80),
                                     trial % 4 == 0 ? 5 : 0);
        const Affine2x3 m = random_map(rng, f.view, 0.1, 0.95, 0.7);  // upscaling, some faces past the edges
        warp_bicubic_to_chw_f32(f.view, m, 112, 112, raw, f32.data(), scratch);
        warp_bicubic_to_hwc_u8(f.view, m, 112, 112, false, u8.data(), scratch);
        for (int y = 0; y < 112; ++y)
            for (int x = 0; x < 112; ++x) {
                const double sx = m[0] * x + m[1] * y + m[2], sy = m[3] * x + m[4] * y + m[5];
                const int ix = static_cast<int>(std::floor(sx)), iy = static_cast<int>(std::floor(sy));
                double ref[3] = {0.0, 0.0, 0.0};
                for (int j = -1; j <= 2; ++j)
                    for (int i = -1; i <= 2; ++i) {
                        if (ix + i < 0 || iy + j < 0 || ix + i >= f.view.width || iy + j >= f.view.height) continue;
                        const double w = reference_keys(sx - (ix + i)) * reference_keys(sy - (iy + j));
                        for (int c = 0; c < 3; ++c) ref[c] += w * f.view.row(iy + j)[(ix + i) * 3 + c];
                    }
                const std::size_t k = static_cast<std::size_t>(y) * 112 + x;
                for (int c = 0; c < 3; ++c) {
                    worst = std::max(worst, std::fabs(f32[c * 112 * 112 + k] - ref[c]));
                    worst_u8 = std::max(worst_u8, std::fabs(u8[k * 3 + c] - std::clamp(ref[c], 0.0, 255.0)) - 0.5);
                }
            }
    }
    check(worst <= 5e-2, "bicubic warp vs reference (grey levels)", worst, 5e-2);
    check(worst_u8 <= 1.0, "bicubic uint8 warp vs reference", worst_u8, 1.0);
    std::vector<std::uint8_t> flat(200 * 200 * 3);
    for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<std::uint8_t>(i % 3 == 0 ? 10 : i % 3 == 1 ? 128 : 250);
    const ImageU8View flat_view{flat.data(), 200, 200, 3, 600};
    double worst_flat = 0.0;
    for (double r : {5.45, 20.2, 80.1}) {
        const double s = r / 112.0, a = 0.4;
        const Affine2x3 m = {s * std::cos(a), -s * std::sin(a), 80.0, s * std::sin(a), s * std::cos(a), 60.0};
        warp_bicubic_to_chw_f32(flat_view, m, 112, 112, raw, f32.data(), scratch);
        for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 112 * 112; ++i)
                worst_flat = std::max(worst_flat, std::fabs(f32[c * 112 * 112 + i] - (c == 0 ? 10.0 : c == 1 ? 128.0 : 250.0)));
    }
    check(worst_flat <= 1e-3, "flat face through the bicubic warp", worst_flat, 1e-3);
    std::printf("bicubic warp (%s) vs double reference: %.4f grey levels at most, flat face %.2g\n",
                simd_path_name(simd_active()), worst, worst_flat);
}

double time_warp(const ImageU8View& src, const Affine2x3& m, int repeats, bool matched) {
    PixelNormalization raw;
    std::vector<float> out(3 * 112 * 112);
    MatchedScratch scratch;
    const MatchedPlan plan = make_matched_plan(112, 112, matched_width(resolution_from_map(m, 112), 112));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) {
        if (matched)
            warp_matched_to_chw_f32(src, m, plan, 112, 112, raw, out.data(), scratch);
        else
            warp_to_chw_f32(src, m, 112, 112, raw, out.data());
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
    std::mt19937 rng(20261202);
    std::printf("crres core tests: vector path %s\n", simd_path_name(simd_available()));
    for (bool simd : {true, false}) {
        set_simd_enabled(simd);
        test_warp(rng);
        test_warp_frame_corner(rng);
        test_warp_wide_frame_edges(rng);
        test_matched(rng);
        test_bicubic(rng);
    }
    set_simd_enabled(true);
    test_simd_against_scalar(rng);
    test_resize(rng);
    test_resize_u8(rng);
    if (simd_available() != SimdPath::scalar) {
        const Frame hd = random_frame(rng, 1080, 1920);
        const Affine2x3 m = {0.8, -0.2, 900.0, 0.2, 0.8, 500.0};  // a face well inside: interior rows only
        const Affine2x3 small = {0.5, -0.12, 900.0, 0.12, 0.5, 500.0};  // a 58 px face: the matched warp
        for (bool matched : {false, true}) {
            const Affine2x3& map = matched ? small : m;
            set_simd_enabled(false);
            const double scalar = time_warp(hd.view, map, 200, matched);
            set_simd_enabled(true);
            const double vector = time_warp(hd.view, map, 200, matched);
            std::printf("%s: %s is %.2fx the scalar loops' speed (this run's ratio)\n",
                        matched ? "matched warp, 58 px face, float" : "bilinear warp 112x112 float",
                        simd_path_name(simd_available()), scalar / vector);
        }
    }
    if (g_failures) {
        std::printf("%d check(s) failed\n", g_failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
