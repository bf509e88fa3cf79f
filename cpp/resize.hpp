// Antialiased bicubic resampling with the semantics of PIL's Image.resize(..., BICUBIC) and of
// torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False): Keys cubic a = -0.5,
// support widened by the scale factor when downsampling, taps truncated at the border and renormalised,
// horizontal pass first. uint8 reproduces PIL's 22-bit fixed point (intermediate rounded to uint8);
// float32 keeps full precision (as torch does on float tensors) and is not clipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace crres {

// Per-output-sample tap window [first, first + count) and weights for one axis.
struct ResampleAxis {
    int in_size = 0;
    int out_size = 0;
    int taps = 0;                      // window capacity per output sample
    std::vector<int> first;            // out_size
    std::vector<int> count;            // out_size
    std::vector<float> weights;        // out_size * taps, float (for the float32 path)
    std::vector<std::int32_t> fixed;   // out_size * taps, PIL's 22-bit fixed point (for the uint8 path)
};

// Antialiased kernels of PIL's Resample.c: Keys cubic (a = -0.5, support 2) and triangle (support 1), both
// widened by the scale factor when downsampling.
enum class ResampleFilter { bicubic, bilinear };

ResampleAxis make_resample_axis(int in_size, int out_size, ResampleFilter filter = ResampleFilter::bicubic);

// Scratch memory reused across calls so the batched kernels allocate once per worker, not per image.
struct ResampleScratch {
    std::vector<std::uint8_t> u8, u8_turned, u8_turned_out;  // *_turned: transposed images of a shrinking pass
    std::vector<float> f32, f32_turned, f32_turned_out;
    std::vector<std::int32_t> acc_i32;
    std::vector<float> acc_f32;
};

// Resizes one packed H x W x C image (C-contiguous). `rows`/`cols` describe in_size -> out_size per axis;
// an axis with in_size == out_size is copied.
void resize_u8(const std::uint8_t* src, int channels, const ResampleAxis& rows, const ResampleAxis& cols,
               std::uint8_t* dst, ResampleScratch& scratch);
void resize_f32(const float* src, int channels, const ResampleAxis& rows, const ResampleAxis& cols, float* dst,
                ResampleScratch& scratch);

// One vertical pass: axis.in_size rows of `row_len` values -> axis.out_size rows (resize's second pass; on a
// transposed image it is the first). uint8 in PIL's fixed point with its rounding, float32 unrounded; integer
// sums do not depend on their order, so the uint8 pass equals PIL's horizontal pass on the transpose.
void resample_rows_u8(const std::uint8_t* src, std::ptrdiff_t row_len, const ResampleAxis& axis, std::uint8_t* dst,
                      ResampleScratch& scratch);
void resample_rows_f32(const float* src, std::ptrdiff_t row_len, const ResampleAxis& axis, float* dst,
                       ResampleScratch& scratch);

// Keys' cubic convolution kernel with a = -0.5 (support 2): the kernel of every bicubic resampling here.
double keys_cubic(double x);

// Size of the side of a `side`-pixel axis when the crop's width is reduced to r (r applies to the width;
// the height follows the aspect ratio, so a square crop goes to r x r).
int degraded_side(int side, int width, int r);

}  // namespace crres
