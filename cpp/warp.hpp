// Fused face alignment: inverse-mapped bilinear sampling of a 3-channel uint8 frame under an affine map, with
// zero (OpenCV BORDER_CONSTANT 0) outside the frame, colour swap and normalisation in the same pass.
#pragma once

#include <cstdint>

#include "image.hpp"
#include "similarity.hpp"

namespace crres {

// out[c] = (pixel[c] - mean[c]) / std[c] for output channel c, stored as pixel * scale + bias.
struct PixelNormalization {
    float scale[3] = {1.f, 1.f, 1.f};
    float bias[3] = {0.f, 0.f, 0.f};
    bool swap_rb = false;  // output channel order is the reverse of the input's (BGR <-> RGB)
};

// Writes a 3 x out_h x out_w float32 planar (CHW) crop. `dst_to_src` maps output pixel centres to source
// pixel coordinates (the inverse of the alignment transform), as cv2.warpAffine with WARP_INVERSE_MAP.
void warp_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                     const PixelNormalization& norm, float* out);

// Writes an out_h x out_w x 3 uint8 interleaved (HWC) crop, rounded to nearest.
void warp_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                    std::uint8_t* out);

}  // namespace crres
