#include "warp.hpp"

#include <algorithm>
#include <cmath>

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

// Visits every output pixel once, row-major, calling sink(y, x, v) with v in the source's channel order.
// Rows whose two endpoints lie inside the image are entirely inside (the map is affine and the interior is
// convex), so they run a branch-free loop; the index clamp there only guards against float rounding.
template <typename Sink>
void warp_bilinear(const ImageU8View& src, const Affine2x3& m, int out_h, int out_w, Sink&& sink) {
    const bool can_fast = src.width >= 2 && src.height >= 2;
    const int max_ix = src.width - 2, max_iy = src.height - 2;
    const float m0 = static_cast<float>(m[0]), m3 = static_cast<float>(m[3]);
    for (int y = 0; y < out_h; ++y) {
        const double row_x = m[1] * y + m[2], row_y = m[4] * y + m[5];
        const double last = static_cast<double>(out_w - 1);
        const bool interior = can_fast && inside_interior(src, row_x, row_y) &&
                              inside_interior(src, m[0] * last + row_x, m[3] * last + row_y);
        const float rx = static_cast<float>(row_x), ry = static_cast<float>(row_y);
        if (interior) {
            for (int x = 0; x < out_w; ++x) {
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
        } else {
            for (int x = 0; x < out_w; ++x) {
                float v[3];
                sample_bordered(src, m0 * static_cast<float>(x) + rx, m3 * static_cast<float>(x) + ry, v);
                sink(y, x, v);
            }
        }
    }
}

}  // namespace

void warp_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                     const PixelNormalization& norm, float* out) {
    const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(out_h) * out_w;
    // Input channel c lands in output plane oc(c); its normalisation is the output channel's.
    float* planes[3];
    float scale[3], bias[3];
    for (int c = 0; c < 3; ++c) {
        const int oc = norm.swap_rb ? 2 - c : c;
        planes[c] = out + oc * plane;
        scale[c] = norm.scale[oc];
        bias[c] = norm.bias[oc];
    }
    warp_bilinear(src, dst_to_src, out_h, out_w, [&](int y, int x, const float v[3]) {
        const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(y) * out_w + x;
        planes[0][i] = v[0] * scale[0] + bias[0];
        planes[1][i] = v[1] * scale[1] + bias[1];
        planes[2][i] = v[2] * scale[2] + bias[2];
    });
}

void warp_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                    std::uint8_t* out) {
    const int o0 = swap_rb ? 2 : 0, o2 = swap_rb ? 0 : 2;
    warp_bilinear(src, dst_to_src, out_h, out_w, [&](int y, int x, const float v[3]) {
        std::uint8_t* p = out + (static_cast<std::ptrdiff_t>(y) * out_w + x) * 3;
        // Bilinear weights are convex, so v is within [0, 255] up to rounding; clamp before the cast.
        p[o0] = static_cast<std::uint8_t>(std::clamp(v[0] + 0.5f, 0.f, 255.f));
        p[1] = static_cast<std::uint8_t>(std::clamp(v[1] + 0.5f, 0.f, 255.f));
        p[o2] = static_cast<std::uint8_t>(std::clamp(v[2] + 0.5f, 0.f, 255.f));
    });
}

}  // namespace crres
