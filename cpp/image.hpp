// Non-owning views over interleaved 8-bit images, shared by the warp and resize kernels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace crres {

// An H x W x C uint8 image whose pixels are packed (pixel stride C, channel stride 1) and whose rows are
// `row_stride` bytes apart (row_stride >= W * C), so a numpy crop of a frame is used without copying.
struct ImageU8View {
    const std::uint8_t* data = nullptr;
    int height = 0;
    int width = 0;
    int channels = 0;
    std::ptrdiff_t row_stride = 0;

    const std::uint8_t* row(int y) const { return data + static_cast<std::ptrdiff_t>(y) * row_stride; }
};

}  // namespace crres
