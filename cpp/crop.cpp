#include "crop.hpp"

#include <algorithm>
#include <cstring>

namespace crres {

void extract_region(const ImageU8View& frame, const PixelRect& rect, std::vector<std::uint8_t>& out) {
    const int w = rect.x1 - rect.x0, h = rect.y1 - rect.y0;
    out.assign(static_cast<std::size_t>(w) * h * 3, 0);
    const int x_lo = std::max(rect.x0, 0), x_hi = std::min(rect.x1, frame.width);
    const int y_lo = std::max(rect.y0, 0), y_hi = std::min(rect.y1, frame.height);
    if (x_lo >= x_hi || y_lo >= y_hi) return;
    const std::size_t bytes = static_cast<std::size_t>(x_hi - x_lo) * 3;
    for (int y = y_lo; y < y_hi; ++y) {
        std::uint8_t* dst = out.data() + (static_cast<std::size_t>(y - rect.y0) * w + (x_lo - rect.x0)) * 3;
        std::memcpy(dst, frame.row(y) + static_cast<std::ptrdiff_t>(x_lo) * 3, bytes);
    }
}

void normalize_to_chw(const std::uint8_t* hwc, int h, int w, const PixelNormalization& norm, float* out) {
    const std::size_t plane = static_cast<std::size_t>(h) * w;
    for (int c = 0; c < 3; ++c) {
        const int oc = norm.swap_rb ? 2 - c : c;
        float* dst = out + oc * plane;
        const float scale = norm.scale[oc], bias = norm.bias[oc];
        for (std::size_t i = 0; i < plane; ++i) dst[i] = hwc[i * 3 + c] * scale + bias;
    }
}

}  // namespace crres
