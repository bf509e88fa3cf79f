// Fused face alignment: inverse-mapped bilinear sampling of a 3-channel uint8 frame under an affine map, with
// zero (OpenCV BORDER_CONSTANT 0) outside the frame, colour swap and normalisation in the same pass. Interior
// rows take the build's vector path (simd.hpp: AVX2+FMA on x86-64, NEON on aarch64).
#pragma once

#include <cstdint>
#include <vector>

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

// Source pixels per output pixel of a dst->src map: sqrt|det| of its linear part (the scale of a similarity).
double source_pixels_per_output_pixel(const Affine2x3& dst_to_src);

// As warp_to_chw_f32 / warp_to_hwc_u8 with bicubic sampling (Keys a = -0.5, the kernel of resize.hpp),
// antialiased where the map shrinks: with k = source pixels per output pixel > 1 the kernel is widened by k
// (from 1.02 up, capped at 8) and renormalised, as PIL's BICUBIC does along an axis. Zeros outside the frame;
// uint8 output is clamped (the kernel overshoots), float output is not. Used for small crops (matched.hpp).
// Interpolation takes 8 (AVX2+FMA) or 4 (NEON) pixels at a time straight from the frame where their taps are
// inside it; elsewhere, and in the baseline build, it reads a float copy of the face's region kept in
// `scratch` (grown once, reused).
void warp_bicubic_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                             const PixelNormalization& norm, float* out, std::vector<float>& scratch);
void warp_bicubic_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                            std::uint8_t* out, std::vector<float>& scratch);

}  // namespace crres
