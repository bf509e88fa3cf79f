#include "similarity.hpp"

#include <cmath>

namespace crres {

const double kArcFaceTemplate112[2 * kTemplatePoints] = {
    38.2946, 51.6963, 73.5318, 51.5014, 56.0252, 71.7366, 41.5493, 92.3655, 70.7299, 92.2041,
};

const char* fit_status_message(FitStatus status) {
    switch (status) {
        case FitStatus::ok: return "ok";
        case FitStatus::non_finite: return "contains NaN or infinite coordinates";
        case FitStatus::coincident: return "points are coincident (no spread), so no transform is defined";
        case FitStatus::collinear: return "points are collinear, which no face's landmarks are";
    }
    return "unknown error";
}

namespace {

// Smallest / largest eigenvalue ratio of a centred 2-D point cloud's scatter matrix below which it is a line.
constexpr double kCollinearRatio = 1e-6;

struct Moments {
    double mean_x = 0.0, mean_y = 0.0;
    double sxx = 0.0, syy = 0.0, sxy = 0.0;  // centred second moments (sums)
};

Moments moments(const double* p, std::size_t n) {
    Moments m;
    for (std::size_t i = 0; i < n; ++i) {
        m.mean_x += p[2 * i];
        m.mean_y += p[2 * i + 1];
    }
    m.mean_x /= static_cast<double>(n);
    m.mean_y /= static_cast<double>(n);
    for (std::size_t i = 0; i < n; ++i) {
        const double dx = p[2 * i] - m.mean_x, dy = p[2 * i + 1] - m.mean_y;
        m.sxx += dx * dx;
        m.syy += dy * dy;
        m.sxy += dx * dy;
    }
    return m;
}

bool all_finite(const double* p, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i)
        if (!std::isfinite(p[i])) return false;
    return true;
}

// Scale-free spread test: a cloud is degenerate when its total variance vanishes relative to its magnitude.
bool has_spread(const Moments& m, const double* p, std::size_t n) {
    double magnitude = 0.0;
    for (std::size_t i = 0; i < 2 * n; ++i) magnitude = std::fmax(magnitude, std::fabs(p[i]));
    const double total = m.sxx + m.syy;
    return total > 0.0 && std::sqrt(total / static_cast<double>(n)) > 1e-9 * std::fmax(magnitude, 1.0);
}

}  // namespace

FitStatus estimate_similarity(const double* src, const double* dst, std::size_t n, Affine2x3& out) {
    if (!all_finite(src, 2 * n) || !all_finite(dst, 2 * n)) return FitStatus::non_finite;
    const Moments ms = moments(src, n);
    const Moments md = moments(dst, n);
    if (!has_spread(ms, src, n) || !has_spread(md, dst, n)) return FitStatus::coincident;
    if (n >= 3) {
        const double trace = ms.sxx + ms.syy;
        const double det = ms.sxx * ms.syy - ms.sxy * ms.sxy;
        const double disc = std::sqrt(std::fmax(0.25 * trace * trace - det, 0.0));
        const double lo = 0.5 * trace - disc, hi = 0.5 * trace + disc;
        if (lo <= kCollinearRatio * hi) return FitStatus::collinear;
    }
    double num_a = 0.0, num_b = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double sx = src[2 * i] - ms.mean_x, sy = src[2 * i + 1] - ms.mean_y;
        const double dx = dst[2 * i] - md.mean_x, dy = dst[2 * i + 1] - md.mean_y;
        num_a += sx * dx + sy * dy;
        num_b += sx * dy - sy * dx;
    }
    const double var = ms.sxx + ms.syy;
    const double a = num_a / var, b = num_b / var;
    if (a == 0.0 && b == 0.0) return FitStatus::coincident;  // fit collapses every point onto one
    out = {a, -b, md.mean_x - (a * ms.mean_x - b * ms.mean_y),
           b, a,  md.mean_y - (b * ms.mean_x + a * ms.mean_y)};
    return FitStatus::ok;
}

bool invert_affine(const Affine2x3& m, Affine2x3& inverse) {
    const double det = m[0] * m[4] - m[1] * m[3];
    if (det == 0.0 || !std::isfinite(det)) return false;
    const double inv_det = 1.0 / det;
    const double a = m[4] * inv_det, b = -m[1] * inv_det;
    const double d = -m[3] * inv_det, e = m[0] * inv_det;
    inverse = {a, b, -(a * m[2] + b * m[5]), d, e, -(d * m[2] + e * m[5])};
    return true;
}

}  // namespace crres
