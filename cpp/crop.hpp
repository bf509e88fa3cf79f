// Region extraction with zero padding and HWC uint8 -> normalised CHW float conversion (detector inputs).
#pragma once

#include <cstdint>
#include <vector>

#include "image.hpp"
#include "mtcnn.hpp"
#include "warp.hpp"

namespace crres {

// Copies rect of `frame` into a packed (height x width x 3) buffer; pixels outside the frame are 0.
void extract_region(const ImageU8View& frame, const PixelRect& rect, std::vector<std::uint8_t>& out);

// Packed h x w x 3 uint8 -> 3 x h x w float planes, normalised and optionally colour-swapped.
void normalize_to_chw(const std::uint8_t* hwc, int h, int w, const PixelNormalization& norm, float* out);

}  // namespace crres
