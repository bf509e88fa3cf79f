// MTCNN glue (Zhang et al. 2016) between the three networks: P-Net map decoding, NMS, box regression and
// squaring, and batched crop + resize of candidates. Boxes are continuous [x1, x2) x [y1, y2) in frame pixels.
#pragma once

#include <cstdint>
#include <vector>

#include "image.hpp"
#include "warp.hpp"

namespace crres {

struct Candidate {
    float x1, y1, x2, y2;
    float score;
    float reg[4];  // regression offsets, in units of the box's width/height
};

enum class OverlapMode { iou, min_area };

// Cells of one P-Net output map (face probability plane and 4 regression planes, out_h x out_w) whose face
// probability is >= threshold, as boxes in frame pixels: cell (i, j) covers [stride*j, stride*j + cell) of the
// level scaled by `scale`.
std::vector<Candidate> pnet_candidates(const float* face_prob, const float* reg, int out_h, int out_w, double scale,
                                       float threshold, int stride, int cell);

// Greedy non-maximum suppression: indices kept, by descending score (ties: lower index first); a box is
// dropped when its overlap with a kept one exceeds `threshold` (IoU, or intersection / smaller area).
std::vector<int> nms(const std::vector<Candidate>& boxes, float threshold, OverlapMode mode);

// Applies the regression offsets (x1 += dx1 * w, ..., w = x2 - x1) and clears them.
void regress(Candidate& c);

// Square box of side max(w, h) around the same centre.
void make_square(Candidate& c);

// Integer source region of a candidate: [floor(x1), ceil(x2)) x [floor(y1), ceil(y2)), at least 1 px.
struct PixelRect {
    int x0, y0, x1, y1;
};
PixelRect pixel_rect(const Candidate& c);

}  // namespace crres
