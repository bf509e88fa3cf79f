// Similarity transform estimation (rotation + uniform scale + translation, no reflection).
#pragma once

#include <array>
#include <cstddef>

namespace crres {

// Row-major 2x3 affine matrix: (x, y) -> (m[0] x + m[1] y + m[2], m[3] x + m[4] y + m[5]).
using Affine2x3 = std::array<double, 6>;

// The ArcFace 112x112 five-point template (left eye, right eye, nose, left mouth, right mouth), x/y interleaved.
constexpr std::size_t kTemplatePoints = 5;
constexpr int kTemplateSize = 112;
extern const double kArcFaceTemplate112[2 * kTemplatePoints];

enum class FitStatus {
    ok,
    non_finite,   // a coordinate is NaN or infinite
    coincident,   // source (or destination) points have no spread
    collinear,    // three or more source points lie on one line: no 2-D face geometry
};

const char* fit_status_message(FitStatus status);

// Least-squares similarity src -> dst from n >= 2 point pairs (x/y interleaved), written to `out`.
// In 2-D, Umeyama's closed form (rotation constrained to det = +1) reduces to the linear least-squares fit of
// [a -b; b a] on centred points, which is what this computes; it equals skimage's SimilarityTransform.estimate.
FitStatus estimate_similarity(const double* src, const double* dst, std::size_t n, Affine2x3& out);

// Inverse of an invertible affine map; returns false when the linear part is singular.
bool invert_affine(const Affine2x3& m, Affine2x3& inverse);

}  // namespace crres
