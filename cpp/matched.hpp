// Resolution-matched alignment (DESIGN section 4, "Canonical crop"): a face smaller than the crop is warped at
// its own scale to a small crop of its equivalent resolution r (bicubic, antialiased where that warp shrinks;
// a bilinear warp at unit scale blurs by its sub-pixel phase: 1.5-2.5 grey levels RMS more error against
// degrade on the astronaut), then brought to the crop size with the bicubic F_up of `degrade`. A face
// photographed at r px then gives the crop that training's F_up,crop(F_down,r(HR crop)) gives, instead of a
// bilinear upscale the model never saw. Faces at or above the crop size take the plain bilinear warp
// (warp.hpp) unchanged.
#pragma once

#include <cstdint>
#include <vector>

#include "image.hpp"
#include "resize.hpp"
#include "similarity.hpp"
#include "warp.hpp"

namespace crres {

// Width of the small crop for a face of `resolution` px (measured across the crop's width) in an out_w-wide
// crop: round(resolution) clamped to [1, out_w]. out_w means the face is not smaller than the crop.
int matched_width(double resolution, int out_w);

// The resolution of a face under a dst->src alignment map, from the map's scale alone: out_w source-pixel
// widths of the crop, out_w / source_pixels_per_output_pixel.
double resolution_from_map(const Affine2x3& dst_to_src, int out_w);

// Small crop size and the bicubic axes small -> crop, for one small width. Built once per distinct width
// before a batch runs, so the per-face kernels allocate nothing.
struct MatchedPlan {
    int small_h = 0;
    int small_w = 0;
    ResampleAxis rows;  // small_h -> out_h
    ResampleAxis cols;  // small_w -> out_w
};

// small_w < out_w; the small height follows the crop's aspect ratio as in degrade (degraded_side).
MatchedPlan make_matched_plan(int out_h, int out_w, int small_w);

// dst->src map of a small_h x small_w crop covering the same face region as `dst_to_src` on the out_h x out_w
// crop, in the resampler's pixel-area convention: small pixel i covers crop [i s, (i + 1) s), s = out / small.
Affine2x3 small_crop_map(const Affine2x3& dst_to_src, int out_h, int out_w, int small_h, int small_w);

// Per-worker buffers, grown on first use and reused for every later face.
struct MatchedScratch {
    std::vector<float> region, small_f32, mid_f32, mid_t_f32;
    std::vector<std::uint8_t> small_u8, mid_u8, mid_t_u8;
    ResampleScratch resample;
};

// Small crop (bicubic warp, antialiased where it shrinks, normalised in the same pass) then a float32 bicubic
// F_up per plane. The normalisation commutes with F_up (its weights sum to 1), so out equals normalising the
// upsampled crop.
void warp_matched_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, const MatchedPlan& plan,
                             int out_h, int out_w, const PixelNormalization& norm, float* out,
                             MatchedScratch& scratch);

// Small uint8 crop (bicubic, rounded and clamped) then the uint8 bicubic F_up, bit-exact with PIL's BICUBIC resize of that crop, as
// degrade's uint8 path is.
void warp_matched_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, const MatchedPlan& plan,
                            int out_h, int out_w, bool swap_rb, std::uint8_t* out, MatchedScratch& scratch);

}  // namespace crres
