#include "matched.hpp"

#include <algorithm>
#include <cmath>

namespace crres {

int matched_width(double resolution, int out_w) {
    if (!(resolution < out_w)) return out_w;  // also NaN
    return std::clamp(static_cast<int>(std::lround(resolution)), 1, out_w);
}

double resolution_from_map(const Affine2x3& dst_to_src, int out_w) {
    return out_w * source_pixels_per_output_pixel(dst_to_src);
}

MatchedPlan make_matched_plan(int out_h, int out_w, int small_w) {
    MatchedPlan plan;
    plan.small_w = small_w;
    plan.small_h = degraded_side(out_h, out_w, small_w);
    plan.rows = make_resample_axis(plan.small_h, out_h);
    plan.cols = make_resample_axis(plan.small_w, out_w);
    return plan;
}

Affine2x3 small_crop_map(const Affine2x3& m, int out_h, int out_w, int small_h, int small_w) {
    // Small pixel centre x maps to crop coordinate X = (x + 0.5) s - 0.5 (centres at integers, as the warp's).
    const double sx = static_cast<double>(out_w) / small_w, sy = static_cast<double>(out_h) / small_h;
    const double ox = 0.5 * sx - 0.5, oy = 0.5 * sy - 0.5;
    return {m[0] * sx, m[1] * sy, m[0] * ox + m[1] * oy + m[2],
            m[3] * sx, m[4] * sy, m[3] * ox + m[4] * oy + m[5]};
}

namespace {

// The map of the transposed small crop: its pixel (x, y) is the small crop's (y, x).
Affine2x3 transposed(const Affine2x3& m) { return {m[1], m[0], m[2], m[4], m[3], m[5]}; }

// rows x cols elements of C values -> cols x rows.
template <int C, typename T>
void transpose(const T* __restrict src, int rows, int cols, T* __restrict dst) {
    for (int x = 0; x < cols; ++x) {
        T* out = dst + static_cast<std::ptrdiff_t>(x) * rows * C;
        const T* in = src + static_cast<std::ptrdiff_t>(x) * C;
        for (int y = 0; y < rows; ++y, in += static_cast<std::ptrdiff_t>(cols) * C)
            for (int c = 0; c < C; ++c) out[y * C + c] = in[c];
    }
}

}  // namespace

// Both kernels warp the small crop transposed (sw x sh), so PIL's horizontal pass is a row pass (contiguous,
// vectorised), transpose the sw -> out_w result (out_w x sh, a few kB) and run the vertical row pass.
void warp_matched_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, const MatchedPlan& plan,
                             int out_h, int out_w, const PixelNormalization& norm, float* out,
                             MatchedScratch& scratch) {
    const int sh = plan.small_h, sw = plan.small_w;
    const std::size_t small_plane = static_cast<std::size_t>(sh) * sw, mid_plane = static_cast<std::size_t>(out_w) * sh;
    const std::size_t plane = static_cast<std::size_t>(out_h) * out_w;
    scratch.small_f32.resize(3 * small_plane);
    scratch.mid_f32.resize(mid_plane);
    scratch.mid_t_f32.resize(mid_plane);
    warp_bicubic_to_chw_f32(src, transposed(small_crop_map(dst_to_src, out_h, out_w, sh, sw)), sw, sh, norm,
                            scratch.small_f32.data(), scratch.region);
    for (int c = 0; c < 3; ++c) {
        resample_rows_f32(scratch.small_f32.data() + c * small_plane, sh, plan.cols, scratch.mid_f32.data(),
                          scratch.resample);
        transpose<1>(scratch.mid_f32.data(), out_w, sh, scratch.mid_t_f32.data());
        resample_rows_f32(scratch.mid_t_f32.data(), out_w, plan.rows, out + c * plane, scratch.resample);
    }
}

void warp_matched_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, const MatchedPlan& plan,
                            int out_h, int out_w, bool swap_rb, std::uint8_t* out, MatchedScratch& scratch) {
    const int sh = plan.small_h, sw = plan.small_w;
    const std::size_t mid = static_cast<std::size_t>(out_w) * sh * 3;
    scratch.small_u8.resize(static_cast<std::size_t>(sh) * sw * 3);
    scratch.mid_u8.resize(mid);
    scratch.mid_t_u8.resize(mid);
    warp_bicubic_to_hwc_u8(src, transposed(small_crop_map(dst_to_src, out_h, out_w, sh, sw)), sw, sh, swap_rb,
                           scratch.small_u8.data(), scratch.region);
    resample_rows_u8(scratch.small_u8.data(), std::ptrdiff_t{sh} * 3, plan.cols, scratch.mid_u8.data(),
                     scratch.resample);
    transpose<3>(scratch.mid_u8.data(), out_w, sh, scratch.mid_t_u8.data());
    resample_rows_u8(scratch.mid_t_u8.data(), std::ptrdiff_t{out_w} * 3, plan.rows, out, scratch.resample);
}

}  // namespace crres
