#include "mtcnn.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace crres {

std::vector<Candidate> pnet_candidates(const float* face_prob, const float* reg, int out_h, int out_w, double scale,
                                       float threshold, int stride, int cell) {
    std::vector<Candidate> out;
    const std::size_t plane = static_cast<std::size_t>(out_h) * out_w;
    for (int i = 0; i < out_h; ++i) {
        for (int j = 0; j < out_w; ++j) {
            const std::size_t at = static_cast<std::size_t>(i) * out_w + j;
            const float p = face_prob[at];
            if (!(p >= threshold)) continue;  // also skips NaN
            Candidate c;
            c.x1 = static_cast<float>(stride * j / scale);
            c.y1 = static_cast<float>(stride * i / scale);
            c.x2 = static_cast<float>((stride * j + cell) / scale);
            c.y2 = static_cast<float>((stride * i + cell) / scale);
            c.score = p;
            for (int k = 0; k < 4; ++k) c.reg[k] = reg[k * plane + at];
            out.push_back(c);
        }
    }
    return out;
}

namespace {

float overlap(const Candidate& a, const Candidate& b, OverlapMode mode) {
    const float iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
    const float ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
    if (iw <= 0.f || ih <= 0.f) return 0.f;
    const float inter = iw * ih;
    const float area_a = (a.x2 - a.x1) * (a.y2 - a.y1), area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
    const float denom = mode == OverlapMode::iou ? area_a + area_b - inter : std::min(area_a, area_b);
    return denom > 0.f ? inter / denom : 0.f;
}

}  // namespace

std::vector<int> nms(const std::vector<Candidate>& boxes, float threshold, OverlapMode mode) {
    std::vector<int> order(boxes.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return boxes[a].score > boxes[b].score; });
    std::vector<int> keep;
    std::vector<char> dropped(boxes.size(), 0);
    for (std::size_t oi = 0; oi < order.size(); ++oi) {
        const int i = order[oi];
        if (dropped[i]) continue;
        keep.push_back(i);
        for (std::size_t oj = oi + 1; oj < order.size(); ++oj) {
            const int j = order[oj];
            if (!dropped[j] && overlap(boxes[i], boxes[j], mode) > threshold) dropped[j] = 1;
        }
    }
    return keep;
}

void regress(Candidate& c) {
    const float w = c.x2 - c.x1, h = c.y2 - c.y1;
    c.x1 += c.reg[0] * w;
    c.y1 += c.reg[1] * h;
    c.x2 += c.reg[2] * w;
    c.y2 += c.reg[3] * h;
    std::fill(c.reg, c.reg + 4, 0.f);
}

void make_square(Candidate& c) {
    const float w = c.x2 - c.x1, h = c.y2 - c.y1, side = std::max(w, h);
    const float cx = c.x1 + 0.5f * w, cy = c.y1 + 0.5f * h;
    c.x1 = cx - 0.5f * side;
    c.y1 = cy - 0.5f * side;
    c.x2 = c.x1 + side;
    c.y2 = c.y1 + side;
}

PixelRect pixel_rect(const Candidate& c) {
    // Clamped to a generous range so that float->int is always defined; regions are clipped when sampled.
    auto to_int = [](float v) { return static_cast<int>(std::clamp(v, -1.0e8f, 1.0e8f)); };
    PixelRect r{to_int(std::floor(c.x1)), to_int(std::floor(c.y1)), to_int(std::ceil(c.x2)), to_int(std::ceil(c.y2))};
    r.x1 = std::max(r.x1, r.x0 + 1);
    r.y1 = std::max(r.y1, r.y0 + 1);
    return r;
}

}  // namespace crres
