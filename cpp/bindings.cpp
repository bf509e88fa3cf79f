// Python bindings of the preprocessing core (crres_sdk._core). Every argument is validated here, at the
// boundary, with TypeError/ValueError naming it; the kernels behind assume valid input and release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "crop.hpp"
#include "image.hpp"
#include "matched.hpp"
#include "mtcnn.hpp"
#include "parallel.hpp"
#include "resize.hpp"
#include "resolution.hpp"
#include "similarity.hpp"
#include "simd.hpp"
#include "warp.hpp"

namespace py = pybind11;
using namespace crres;

namespace {

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array as_array(const py::handle& obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                             py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    return py::reinterpret_borrow<py::array>(obj);
}

template <typename T>
bool has_dtype(const py::array& a) { return a.dtype().is(py::dtype::of<T>()); }

void require_ndim(const py::array& a, const char* name, py::ssize_t ndim, const char* layout) {
    if (a.ndim() != ndim)
        throw py::value_error(std::string(name) + " must have shape " + layout + ", got shape " + shape_str(a));
}

void require_c_contiguous(const py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous; pass numpy.ascontiguousarray(" + name + ")");
}

int require_threads(int threads) {
    if (threads < 0) throw py::value_error("threads must be >= 0 (0 = one per hardware thread), got " + std::to_string(threads));
    return threads;
}

int require_size(int v, const char* name) {
    if (v < 1) throw py::value_error(std::string(name) + " must be >= 1, got " + std::to_string(v));
    return v;
}

// A 3-channel uint8 frame: pixels packed (channel stride 1, pixel stride 3), any positive row stride.
ImageU8View frame_view(const py::handle& obj, const char* name) {
    py::array a = as_array(obj, name);
    if (!has_dtype<std::uint8_t>(a))
        throw py::type_error(std::string(name) + " must be uint8, got " + dtype_name(a));
    require_ndim(a, name, 3, "(H, W, 3)");
    if (a.shape(2) != 3)
        throw py::value_error(std::string(name) + " must have 3 channels (H, W, 3), got shape " + shape_str(a));
    if (a.shape(0) == 0 || a.shape(1) == 0)
        throw py::value_error(std::string(name) + " is empty, shape " + shape_str(a));
    if (a.strides(2) != 1 || a.strides(1) != 3 || a.strides(0) < 3 * a.shape(1))
        throw py::value_error(std::string(name) +
                              " must have packed pixels (strides (>=3W, 3, 1)); pass numpy.ascontiguousarray(" +
                              name + ")");
    if (a.shape(0) > INT32_MAX / 4 || a.shape(1) > INT32_MAX / 4)
        throw py::value_error(std::string(name) + " is too large, shape " + shape_str(a));
    ImageU8View v;
    v.data = static_cast<const std::uint8_t*>(a.data());
    v.height = static_cast<int>(a.shape(0));
    v.width = static_cast<int>(a.shape(1));
    v.channels = 3;
    v.row_stride = a.strides(0);
    return v;
}

// (..., 2) float32/float64 points as a flat x/y-interleaved double vector; `shape_text` documents the layout.
std::vector<double> points(const py::handle& obj, const char* name, py::ssize_t ndim, const char* shape_text) {
    py::array a = as_array(obj, name);
    if (!has_dtype<float>(a) && !has_dtype<double>(a))
        throw py::type_error(std::string(name) + " must be float32 or float64, got " + dtype_name(a));
    require_ndim(a, name, ndim, shape_text);
    if (a.shape(ndim - 1) != 2)
        throw py::value_error(std::string(name) + " must have shape " + shape_text + ", got shape " + shape_str(a));
    require_c_contiguous(a, name);
    std::vector<double> out(static_cast<std::size_t>(a.size()));
    if (has_dtype<float>(a)) {
        const float* p = static_cast<const float*>(a.data());
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i];
    } else {
        const double* p = static_cast<const double*>(a.data());
        std::copy(p, p + out.size(), out.begin());
    }
    return out;
}

std::vector<double> template_points(const py::object& obj, std::size_t& n_points) {
    if (obj.is_none()) {
        n_points = kTemplatePoints;
        return std::vector<double>(kArcFaceTemplate112, kArcFaceTemplate112 + 2 * kTemplatePoints);
    }
    std::vector<double> t = points(obj, "template", 2, "(K, 2)");
    n_points = t.size() / 2;
    return t;
}

// Per-face dst->src maps from (N, K, 2) landmarks fitted to the (K, 2) template.
std::vector<Affine2x3> inverse_alignments(const py::handle& landmarks, const py::object& tmpl, std::size_t& n_faces) {
    std::size_t k = 0;
    const std::vector<double> t = template_points(tmpl, k);
    if (k < 2) throw py::value_error("template must have at least 2 points, got " + std::to_string(k));
    const std::vector<double> lm = points(landmarks, "landmarks", 3, "(N, K, 2)");
    py::array a = py::reinterpret_borrow<py::array>(landmarks);
    if (static_cast<std::size_t>(a.shape(1)) != k)
        throw py::value_error("landmarks has " + std::to_string(a.shape(1)) + " points per face but template has " +
                              std::to_string(k));
    n_faces = static_cast<std::size_t>(a.shape(0));
    std::vector<Affine2x3> maps(n_faces);
    for (std::size_t i = 0; i < n_faces; ++i) {
        Affine2x3 fwd;
        const FitStatus st = estimate_similarity(lm.data() + i * 2 * k, t.data(), k, fwd);
        if (st != FitStatus::ok)
            throw py::value_error("landmarks[" + std::to_string(i) + "]: " + fit_status_message(st));
        if (!invert_affine(fwd, maps[i]))
            throw py::value_error("landmarks[" + std::to_string(i) + "]: alignment transform is not invertible");
    }
    return maps;
}

// Per-face resolution across the crop's width for the matched warp. With the five-point convention (K = 5)
// it is the equivalent resolution generalised to any crop: out_w * eye distance / the template's eye distance
// (112 d / 35.24 for the ArcFace crop), the figure the SDK reports and picks thresholds by. Other templates
// use the fitted map's scale.
std::vector<double> alignment_resolutions(const py::handle& landmarks, const py::object& tmpl,
                                          const std::vector<Affine2x3>& maps, int out_w) {
    std::vector<double> r(maps.size());
    std::size_t k = 0;
    const std::vector<double> t = template_points(tmpl, k);
    const double template_eyes = std::hypot(t[2] - t[0], t[3] - t[1]);
    if (k != kTemplatePoints || !(template_eyes > 0.0)) {
        for (std::size_t i = 0; i < maps.size(); ++i) r[i] = resolution_from_map(maps[i], out_w);
        return r;
    }
    const std::vector<double> lm = points(landmarks, "landmarks", 3, "(N, K, 2)");
    for (std::size_t i = 0; i < maps.size(); ++i) {
        const double* p = lm.data() + i * 2 * k;
        r[i] = out_w * std::hypot(p[2] - p[0], p[3] - p[1]) / template_eyes;
    }
    return r;
}

std::vector<double> map_resolutions(const std::vector<Affine2x3>& maps, int out_w) {
    std::vector<double> r(maps.size());
    for (std::size_t i = 0; i < maps.size(); ++i) r[i] = resolution_from_map(maps[i], out_w);
    return r;
}

// Per-face dst->src maps from (N, 2, 3) src->dst matrices (cv2.warpAffine's convention).
std::vector<Affine2x3> inverse_matrices(const py::handle& obj, std::size_t& n_faces) {
    py::array a = as_array(obj, "matrices");
    if (!has_dtype<double>(a) && !has_dtype<float>(a))
        throw py::type_error("matrices must be float32 or float64, got " + dtype_name(a));
    require_ndim(a, "matrices", 3, "(N, 2, 3)");
    if (a.shape(1) != 2 || a.shape(2) != 3)
        throw py::value_error("matrices must have shape (N, 2, 3), got shape " + shape_str(a));
    require_c_contiguous(a, "matrices");
    n_faces = static_cast<std::size_t>(a.shape(0));
    std::vector<Affine2x3> maps(n_faces);
    for (std::size_t i = 0; i < n_faces; ++i) {
        Affine2x3 fwd;
        for (int j = 0; j < 6; ++j)
            fwd[j] = has_dtype<double>(a) ? static_cast<const double*>(a.data())[i * 6 + j]
                                         : static_cast<const float*>(a.data())[i * 6 + j];
        for (double v : fwd)
            if (!std::isfinite(v)) throw py::value_error("matrices[" + std::to_string(i) + "] is not finite");
        if (!invert_affine(fwd, maps[i]))
            throw py::value_error("matrices[" + std::to_string(i) + "] is singular");
    }
    return maps;
}

PixelNormalization normalization(const std::vector<float>& mean, const std::vector<float>& std, bool swap_rb) {
    if (mean.size() != 3) throw py::value_error("mean must have 3 values, got " + std::to_string(mean.size()));
    if (std.size() != 3) throw py::value_error("std must have 3 values, got " + std::to_string(std.size()));
    PixelNormalization n;
    n.swap_rb = swap_rb;
    for (int c = 0; c < 3; ++c) {
        if (!std::isfinite(mean[c])) throw py::value_error("mean must be finite");
        if (!std::isfinite(std[c]) || std[c] == 0.f) throw py::value_error("std must be finite and non-zero");
        n.scale[c] = 1.f / std[c];
        n.bias[c] = -mean[c] / std[c];
    }
    return n;
}

// How a face smaller than the crop is resampled: bicubic (one Keys a = -0.5 warp straight to the crop),
// matched (warp at its own scale, then degrade's F_up: two resamplings, matched.hpp) or bilinear (the plain
// warp every face at or above the crop size takes).
enum class Resample { bilinear, bicubic, matched };

Resample resample_mode(const std::string& name) {
    if (name == "bicubic") return Resample::bicubic;
    if (name == "matched") return Resample::matched;
    if (name == "bilinear") return Resample::bilinear;
    throw py::value_error("resample must be 'bicubic', 'matched' or 'bilinear', got '" + name + "'");
}

// Per face, built before the GIL is released so the workers only read it: small_w[i] < out_w takes the
// matched warp with plans[small_w[i]]; otherwise bicubic[i] != 0 takes the direct bicubic warp, else bilinear.
struct WarpPlans {
    std::vector<int> small_w;
    std::vector<char> bicubic;
    std::map<int, MatchedPlan> plans;
};

WarpPlans warp_plans(Resample mode, const std::vector<double>& resolutions, int out_h, int out_w) {
    WarpPlans p;
    p.small_w.assign(resolutions.size(), out_w);
    p.bicubic.assign(resolutions.size(), 0);
    for (std::size_t i = 0; i < resolutions.size(); ++i) {
        const int w = matched_width(resolutions[i], out_w);
        if (w >= out_w || mode == Resample::bilinear) continue;
        if (mode == Resample::bicubic) {
            p.bicubic[i] = 1;
            continue;
        }
        p.small_w[i] = w;
        if (!p.plans.count(w)) p.plans.emplace(w, make_matched_plan(out_h, out_w, w));
    }
    return p;
}

bool needs_scratch(const WarpPlans& wp) {
    return !wp.plans.empty() || std::find(wp.bicubic.begin(), wp.bicubic.end(), 1) != wp.bicubic.end();
}

py::array_t<float> warp_batch_f32(const ImageU8View& img, const std::vector<Affine2x3>& maps, const WarpPlans& wp,
                                  int out_h, int out_w, const PixelNormalization& norm, int threads) {
    const py::ssize_t n = static_cast<py::ssize_t>(maps.size());
    py::array_t<float> out({n, py::ssize_t{3}, py::ssize_t{out_h}, py::ssize_t{out_w}});
    float* dst = out.mutable_data();
    const std::size_t per_face = std::size_t(3) * out_h * out_w;
    const int workers = resolve_threads(threads, maps.size());
    std::vector<MatchedScratch> scratch(needs_scratch(wp) ? static_cast<std::size_t>(workers) : 0);
    py::gil_scoped_release release;
    parallel_for(maps.size(), workers, [&](std::size_t b, std::size_t e, int worker) {
        for (std::size_t i = b; i < e; ++i) {
            if (wp.small_w[i] < out_w)
                warp_matched_to_chw_f32(img, maps[i], wp.plans.at(wp.small_w[i]), out_h, out_w, norm,
                                        dst + i * per_face, scratch[worker]);
            else if (wp.bicubic[i])
                warp_bicubic_to_chw_f32(img, maps[i], out_h, out_w, norm, dst + i * per_face,
                                        scratch[worker].region);
            else
                warp_to_chw_f32(img, maps[i], out_h, out_w, norm, dst + i * per_face);
        }
    });
    return out;
}

py::array_t<std::uint8_t> warp_batch_u8(const ImageU8View& img, const std::vector<Affine2x3>& maps,
                                        const WarpPlans& wp, int out_h, int out_w, bool swap_rb, int threads) {
    const py::ssize_t n = static_cast<py::ssize_t>(maps.size());
    py::array_t<std::uint8_t> out({n, py::ssize_t{out_h}, py::ssize_t{out_w}, py::ssize_t{3}});
    std::uint8_t* dst = out.mutable_data();
    const std::size_t per_face = std::size_t(3) * out_h * out_w;
    const int workers = resolve_threads(threads, maps.size());
    std::vector<MatchedScratch> scratch(needs_scratch(wp) ? static_cast<std::size_t>(workers) : 0);
    py::gil_scoped_release release;
    parallel_for(maps.size(), workers, [&](std::size_t b, std::size_t e, int worker) {
        for (std::size_t i = b; i < e; ++i) {
            if (wp.small_w[i] < out_w)
                warp_matched_to_hwc_u8(img, maps[i], wp.plans.at(wp.small_w[i]), out_h, out_w, swap_rb,
                                       dst + i * per_face, scratch[worker]);
            else if (wp.bicubic[i])
                warp_bicubic_to_hwc_u8(img, maps[i], out_h, out_w, swap_rb, dst + i * per_face,
                                       scratch[worker].region);
            else
                warp_to_hwc_u8(img, maps[i], out_h, out_w, swap_rb, dst + i * per_face);
        }
    });
    return out;
}

// (N, H, W, C) uint8 or float32 C-contiguous batch.
struct Batch {
    py::array array;
    bool is_u8 = false;
    int n = 0, h = 0, w = 0, c = 0;
};

Batch image_batch(const py::handle& obj, const char* name) {
    Batch b;
    b.array = as_array(obj, name);
    b.is_u8 = has_dtype<std::uint8_t>(b.array);
    if (!b.is_u8 && !has_dtype<float>(b.array))
        throw py::type_error(std::string(name) + " must be uint8 or float32, got " + dtype_name(b.array));
    require_ndim(b.array, name, 4, "(N, H, W, C)");
    require_c_contiguous(b.array, name);
    if (b.array.shape(1) == 0 || b.array.shape(2) == 0 || b.array.shape(3) == 0)
        throw py::value_error(std::string(name) + " has empty images, shape " + shape_str(b.array));
    for (int d = 0; d < 4; ++d)
        if (b.array.shape(d) > INT32_MAX / 4) throw py::value_error(std::string(name) + " is too large");
    b.n = static_cast<int>(b.array.shape(0));
    b.h = static_cast<int>(b.array.shape(1));
    b.w = static_cast<int>(b.array.shape(2));
    b.c = static_cast<int>(b.array.shape(3));
    return b;
}

py::array new_like(const Batch& b, int h, int w) {
    const std::vector<py::ssize_t> shape{b.n, h, w, b.c};
    if (b.is_u8) return py::array_t<std::uint8_t>(shape);
    return py::array_t<float>(shape);
}

// Resizes item i of `in` with axes (rows[i], cols[i]) into `out`, items in parallel.
void resize_items(const Batch& in, py::array& out, const std::vector<const ResampleAxis*>& rows,
                  const std::vector<const ResampleAxis*>& cols, int threads) {
    const std::size_t in_item = std::size_t(in.h) * in.w * in.c;
    const std::size_t out_item = std::size_t(out.shape(1)) * out.shape(2) * in.c;
    const void* src = in.array.data();
    void* dst = out.mutable_data();
    const int workers = resolve_threads(threads, std::size_t(in.n));
    std::vector<ResampleScratch> scratch(static_cast<std::size_t>(workers));
    py::gil_scoped_release release;
    parallel_for(std::size_t(in.n), workers, [&](std::size_t b, std::size_t e, int worker) {
        for (std::size_t i = b; i < e; ++i) {
            if (in.is_u8)
                resize_u8(static_cast<const std::uint8_t*>(src) + i * in_item, in.c, *rows[i], *cols[i],
                          static_cast<std::uint8_t*>(dst) + i * out_item, scratch[worker]);
            else
                resize_f32(static_cast<const float*>(src) + i * in_item, in.c, *rows[i], *cols[i],
                           static_cast<float*>(dst) + i * out_item, scratch[worker]);
        }
    });
}

py::array resize_batch(const py::handle& images, int out_h, int out_w, int threads) {
    const Batch in = image_batch(images, "images");
    require_size(out_h, "height");
    require_size(out_w, "width");
    require_threads(threads);
    const ResampleAxis rows = make_resample_axis(in.h, out_h), cols = make_resample_axis(in.w, out_w);
    py::array out = new_like(in, out_h, out_w);
    resize_items(in, out, std::vector<const ResampleAxis*>(in.n, &rows), std::vector<const ResampleAxis*>(in.n, &cols), threads);
    return out;
}

py::array degrade_batch(const py::handle& crops, const py::handle& sizes_obj, int threads) {
    const Batch in = image_batch(crops, "crops");
    require_threads(threads);
    py::array sizes = as_array(sizes_obj, "sizes");
    if (!has_dtype<std::int64_t>(sizes) && !has_dtype<std::int32_t>(sizes))
        throw py::type_error("sizes must be int32 or int64, got " + dtype_name(sizes));
    require_ndim(sizes, "sizes", 1, "(N,)");
    require_c_contiguous(sizes, "sizes");
    if (sizes.shape(0) != in.n)
        throw py::value_error("sizes has " + std::to_string(sizes.shape(0)) + " entries for " + std::to_string(in.n) +
                              " crops");
    // Axes for each distinct r, built once and shared read-only by the workers.
    std::unordered_map<long long, std::vector<ResampleAxis>> axes;  // r -> {down rows, down cols, up rows, up cols}
    std::vector<long long> r_of(static_cast<std::size_t>(in.n));
    for (int i = 0; i < in.n; ++i) {
        const long long r = has_dtype<std::int64_t>(sizes) ? static_cast<const std::int64_t*>(sizes.data())[i]
                                                           : static_cast<const std::int32_t*>(sizes.data())[i];
        if (r < 1 || r > in.w)
            throw py::value_error("sizes[" + std::to_string(i) + "] = " + std::to_string(r) +
                                  " is outside [1, crop width " + std::to_string(in.w) + "]");
        r_of[i] = r;
        if (!axes.count(r)) {
            const int dh = degraded_side(in.h, in.w, static_cast<int>(r)), dw = static_cast<int>(r);
            axes[r] = {make_resample_axis(in.h, dh), make_resample_axis(in.w, dw), make_resample_axis(dh, in.h),
                       make_resample_axis(dw, in.w)};
        }
    }
    py::array out = new_like(in, in.h, in.w);
    const std::size_t item = std::size_t(in.h) * in.w * in.c;
    const void* src = in.array.data();
    void* dst = out.mutable_data();
    const int workers = resolve_threads(threads, std::size_t(in.n));
    std::vector<ResampleScratch> scratch(static_cast<std::size_t>(workers));
    std::vector<std::vector<std::uint8_t>> small_u8(static_cast<std::size_t>(workers));
    std::vector<std::vector<float>> small_f32(static_cast<std::size_t>(workers));
    py::gil_scoped_release release;
    parallel_for(std::size_t(in.n), workers, [&](std::size_t b, std::size_t e, int worker) {
        for (std::size_t i = b; i < e; ++i) {
            const std::vector<ResampleAxis>& ax = axes.at(r_of[i]);
            const std::size_t small = std::size_t(ax[0].out_size) * ax[1].out_size * in.c;
            if (in.is_u8) {
                std::vector<std::uint8_t>& tmp = small_u8[worker];
                tmp.resize(small);
                resize_u8(static_cast<const std::uint8_t*>(src) + i * item, in.c, ax[0], ax[1], tmp.data(), scratch[worker]);
                resize_u8(tmp.data(), in.c, ax[2], ax[3], static_cast<std::uint8_t*>(dst) + i * item, scratch[worker]);
            } else {
                std::vector<float>& tmp = small_f32[worker];
                tmp.resize(small);
                resize_f32(static_cast<const float*>(src) + i * item, in.c, ax[0], ax[1], tmp.data(), scratch[worker]);
                resize_f32(tmp.data(), in.c, ax[2], ax[3], static_cast<float*>(dst) + i * item, scratch[worker]);
            }
        }
    });
    return out;
}


// ---- MTCNN glue ------------------------------------------------------------------------------------------

constexpr int kCandidateColumns = 9;  // x1, y1, x2, y2, score, reg0..reg3

py::array_t<float> candidates_array(const std::vector<Candidate>& cands) {
    py::array_t<float> out({static_cast<py::ssize_t>(cands.size()), py::ssize_t{kCandidateColumns}});
    float* p = out.mutable_data();
    for (const Candidate& c : cands) {
        const float row[kCandidateColumns] = {c.x1, c.y1, c.x2, c.y2, c.score, c.reg[0], c.reg[1], c.reg[2], c.reg[3]};
        std::copy(row, row + kCandidateColumns, p);
        p += kCandidateColumns;
    }
    return out;
}

// (N, >= min_cols) float32 C-contiguous rows: columns 0-3 box, 4 score, 5-8 regression (when present).
std::vector<Candidate> candidates_from(const py::handle& obj, const char* name, py::ssize_t min_cols) {
    py::array a = as_array(obj, name);
    if (!has_dtype<float>(a)) throw py::type_error(std::string(name) + " must be float32, got " + dtype_name(a));
    require_ndim(a, name, 2, "(N, C)");
    if (a.shape(1) < min_cols)
        throw py::value_error(std::string(name) + " must have at least " + std::to_string(min_cols) +
                              " columns, got shape " + shape_str(a));
    require_c_contiguous(a, name);
    const float* p = static_cast<const float*>(a.data());
    const py::ssize_t cols = a.shape(1);
    std::vector<Candidate> out(static_cast<std::size_t>(a.shape(0)));
    for (std::size_t i = 0; i < out.size(); ++i, p += cols) {
        for (int k = 0; k < std::min<py::ssize_t>(cols, 4); ++k)
            if (!std::isfinite(p[k])) throw py::value_error(std::string(name) + "[" + std::to_string(i) + "] is not finite");
        Candidate& c = out[i];
        c.x1 = p[0]; c.y1 = p[1]; c.x2 = p[2]; c.y2 = p[3];
        c.score = cols > 4 ? p[4] : 0.f;
        for (int k = 0; k < 4; ++k) c.reg[k] = cols > 5 + k ? p[5 + k] : 0.f;
    }
    return out;
}

OverlapMode overlap_mode(const std::string& mode) {
    if (mode == "iou") return OverlapMode::iou;
    if (mode == "min") return OverlapMode::min_area;
    throw py::value_error("mode must be 'iou' or 'min', got '" + mode + "'");
}

float require_unit(float v, const char* name) {
    if (!(v >= 0.f && v <= 1.f)) throw py::value_error(std::string(name) + " must be in [0, 1], got " + std::to_string(v));
    return v;
}

py::array_t<float> pnet_decode(const py::handle& prob_obj, const py::handle& reg_obj, double scale, float threshold,
                               float nms_threshold) {
    py::array prob = as_array(prob_obj, "prob"), reg = as_array(reg_obj, "reg");
    for (auto* a : {&prob, &reg})
        if (!has_dtype<float>(*a)) throw py::type_error("prob and reg must be float32");
    require_ndim(prob, "prob", 2, "(H, W)");
    require_ndim(reg, "reg", 3, "(4, H, W)");
    if (reg.shape(0) != 4 || reg.shape(1) != prob.shape(0) || reg.shape(2) != prob.shape(1))
        throw py::value_error("reg must have shape (4, H, W) matching prob (H, W), got " + shape_str(reg) + " and " +
                              shape_str(prob));
    require_c_contiguous(prob, "prob");
    require_c_contiguous(reg, "reg");
    if (!(scale > 0.0) || !std::isfinite(scale)) throw py::value_error("scale must be a positive finite number");
    require_unit(threshold, "threshold");
    require_unit(nms_threshold, "nms_threshold");
    std::vector<Candidate> cands;
    {
        py::gil_scoped_release release;
        cands = pnet_candidates(static_cast<const float*>(prob.data()), static_cast<const float*>(reg.data()),
                                static_cast<int>(prob.shape(0)), static_cast<int>(prob.shape(1)), scale, threshold, 2, 12);
        const std::vector<int> keep = nms(cands, nms_threshold, OverlapMode::iou);
        std::vector<Candidate> kept;
        kept.reserve(keep.size());
        for (int i : keep) kept.push_back(cands[i]);
        cands.swap(kept);
    }
    return candidates_array(cands);
}

std::vector<double> scales_from(const std::vector<double>& scales) {
    for (double s : scales)
        if (!(s > 0.0 && s <= 64.0)) throw py::value_error("scales must be in (0, 64], got " + std::to_string(s));
    return scales;
}

// One normalised (1, 3, ceil(H s), ceil(W s)) level per scale (scales decreasing), with PIL's antialiased
// BILINEAR (MATLAB imresize's kernel, which MTCNN was trained with). The first level is resampled from the
// frame, every further one from the level before it: each step shrinks by ~0.7, so its kernel spans a few
// taps instead of the 1/s taps a resample from the full frame needs (~6x less work on a 1080p pyramid).
py::list pyramid(const py::handle& image, const std::vector<double>& scales_in, std::vector<float> mean,
                 std::vector<float> std, bool swap_rb, int threads) {
    const ImageU8View frame = frame_view(image, "image");
    const std::vector<double> scales = scales_from(scales_in);
    for (std::size_t i = 1; i < scales.size(); ++i)
        if (!(scales[i] < scales[i - 1])) throw py::value_error("scales must be strictly decreasing");
    const PixelNormalization norm = normalization(mean, std, swap_rb);
    require_threads(threads);
    std::vector<py::array_t<float>> levels;
    std::vector<std::pair<ResampleAxis, ResampleAxis>> axes;
    int prev_h = frame.height, prev_w = frame.width;
    for (double s : scales) {
        const int h = std::max(1, static_cast<int>(std::ceil(frame.height * s)));
        const int w = std::max(1, static_cast<int>(std::ceil(frame.width * s)));
        levels.emplace_back(std::vector<py::ssize_t>{1, 3, h, w});
        axes.emplace_back(make_resample_axis(prev_h, h, ResampleFilter::bilinear),
                          make_resample_axis(prev_w, w, ResampleFilter::bilinear));
        prev_h = h;
        prev_w = w;
    }
    std::vector<float*> outs;
    for (auto& l : levels) outs.push_back(l.mutable_data());
    {
        py::gil_scoped_release release;
        // The resampler reads packed rows; a row-strided view is packed once here.
        std::vector<std::uint8_t> packed;
        const std::uint8_t* src = frame.data;
        if (frame.row_stride != static_cast<std::ptrdiff_t>(frame.width) * 3) {
            packed.resize(static_cast<std::size_t>(frame.height) * frame.width * 3);
            for (int y = 0; y < frame.height; ++y)
                std::memcpy(packed.data() + static_cast<std::size_t>(y) * frame.width * 3, frame.row(y),
                            static_cast<std::size_t>(frame.width) * 3);
            src = packed.data();
        }
        std::vector<std::vector<std::uint8_t>> resized(scales.size());
        ResampleScratch scratch;
        for (std::size_t i = 0; i < scales.size(); ++i) {  // sequential: level i reads level i - 1
            resized[i].resize(static_cast<std::size_t>(axes[i].first.out_size) * axes[i].second.out_size * 3);
            resize_u8(i == 0 ? src : resized[i - 1].data(), 3, axes[i].first, axes[i].second, resized[i].data(),
                      scratch);
        }
        parallel_for(scales.size(), threads, [&](std::size_t b, std::size_t e, int) {
            for (std::size_t i = b; i < e; ++i)
                normalize_to_chw(resized[i].data(), axes[i].first.out_size, axes[i].second.out_size, norm, outs[i]);
        });
    }
    py::list out;
    for (auto& l : levels) out.append(l);
    return out;
}

// (N, 3, size, size) normalised crops of each box's pixel region (zero outside the frame), resampled with
// antialiased bilinear like the pyramid.
py::array_t<float> candidate_crops(const py::handle& image, const py::handle& boxes_obj, int size,
                                   std::vector<float> mean, std::vector<float> std, bool swap_rb, int threads) {
    const ImageU8View frame = frame_view(image, "image");
    const std::vector<Candidate> boxes = candidates_from(boxes_obj, "boxes", 4);
    require_size(size, "size");
    require_threads(threads);
    const PixelNormalization norm = normalization(mean, std, swap_rb);
    std::vector<PixelRect> rects;
    for (std::size_t i = 0; i < boxes.size(); ++i) {
        const PixelRect r = pixel_rect(boxes[i]);
        if (static_cast<long long>(r.x1 - r.x0) * (r.y1 - r.y0) > 64LL * 1024 * 1024)
            throw py::value_error("boxes[" + std::to_string(i) + "] is implausibly large");
        rects.push_back(r);
    }
    py::array_t<float> out({static_cast<py::ssize_t>(boxes.size()), py::ssize_t{3}, py::ssize_t{size}, py::ssize_t{size}});
    float* dst = out.mutable_data();
    const std::size_t per = std::size_t(3) * size * size;
    py::gil_scoped_release release;
    const int workers = resolve_threads(threads, boxes.size());
    std::vector<ResampleScratch> scratch(static_cast<std::size_t>(std::max(workers, 1)));
    std::vector<std::vector<std::uint8_t>> region(scratch.size()), small(scratch.size());
    parallel_for(boxes.size(), workers, [&](std::size_t b, std::size_t e, int worker) {
        for (std::size_t i = b; i < e; ++i) {
            const PixelRect& r = rects[i];
            extract_region(frame, r, region[worker]);
            const ResampleAxis rows = make_resample_axis(r.y1 - r.y0, size, ResampleFilter::bilinear);
            const ResampleAxis cols = make_resample_axis(r.x1 - r.x0, size, ResampleFilter::bilinear);
            small[worker].resize(static_cast<std::size_t>(size) * size * 3);
            resize_u8(region[worker].data(), 3, rows, cols, small[worker].data(), scratch[worker]);
            normalize_to_chw(small[worker].data(), size, size, norm, dst + i * per);
        }
    });
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "crres C++ preprocessing core: similarity fit, fused align+normalise, antialiased bicubic "
              "resize/degrade, equivalent resolution. Use the typed wrappers in crres_sdk.preprocess.";

    m.def("arcface_template", [] {
        py::array_t<double> t({py::ssize_t(kTemplatePoints), py::ssize_t{2}});
        std::copy(kArcFaceTemplate112, kArcFaceTemplate112 + 2 * kTemplatePoints, t.mutable_data());
        return t;
    }, "The ArcFace 112x112 five-point template, shape (5, 2), float64.");
    m.attr("TEMPLATE_SIZE") = kTemplateSize;
    m.attr("TEMPLATE_INTEROCULAR") = template_interocular();

    m.def("estimate_similarity", [](const py::handle& src, const py::handle& dst) {
        const std::vector<double> s = points(src, "src", 2, "(N, 2)");
        const std::vector<double> d = points(dst, "dst", 2, "(N, 2)");
        if (s.size() != d.size())
            throw py::value_error("src and dst must have the same number of points, got " + std::to_string(s.size() / 2) +
                                  " and " + std::to_string(d.size() / 2));
        if (s.size() < 4) throw py::value_error("src must have at least 2 points, got " + std::to_string(s.size() / 2));
        Affine2x3 fit;
        const FitStatus st = estimate_similarity(s.data(), d.data(), s.size() / 2, fit);
        if (st != FitStatus::ok) throw py::value_error(std::string("src/dst: ") + fit_status_message(st));
        py::array_t<double> out({py::ssize_t{2}, py::ssize_t{3}});
        std::copy(fit.begin(), fit.end(), out.mutable_data());
        return out;
    }, py::arg("src"), py::arg("dst"),
       "Least-squares similarity (Umeyama, no reflection) mapping src (N, 2) onto dst (N, 2); returns (2, 3).");

    // resample (faces smaller than the crop; larger ones always take the bilinear warp): "bicubic" (one bicubic
    // warp to the crop), "matched" (warp at their own scale, then bicubic F_up as degrade) or "bilinear" (one
    // bilinear warp, cv2.warpAffine's result).
    m.def("align_f32", [](const py::handle& image, const py::handle& landmarks, const py::object& tmpl, int out_h,
                          int out_w, std::vector<float> mean, std::vector<float> std, bool swap_rb, int threads,
                          const std::string& resample) {
        const ImageU8View img = frame_view(image, "image");
        require_size(out_h, "height"); require_size(out_w, "width"); require_threads(threads);
        const PixelNormalization norm = normalization(mean, std, swap_rb);
        const Resample mode = resample_mode(resample);
        std::size_t n = 0;
        const std::vector<Affine2x3> maps = inverse_alignments(landmarks, tmpl, n);
        const WarpPlans wp = warp_plans(
            mode, mode != Resample::bilinear ? alignment_resolutions(landmarks, tmpl, maps, out_w) : std::vector<double>(n),
            out_h, out_w);
        return warp_batch_f32(img, maps, wp, out_h, out_w, norm, threads);
    }, py::arg("image"), py::arg("landmarks"), py::arg("template"), py::arg("height"), py::arg("width"),
       py::arg("mean"), py::arg("std"), py::arg("swap_rb"), py::arg("threads"), py::arg("resample") = "bicubic");

    m.def("align_u8", [](const py::handle& image, const py::handle& landmarks, const py::object& tmpl, int out_h,
                         int out_w, bool swap_rb, int threads, const std::string& resample) {
        const ImageU8View img = frame_view(image, "image");
        require_size(out_h, "height"); require_size(out_w, "width"); require_threads(threads);
        const Resample mode = resample_mode(resample);
        std::size_t n = 0;
        const std::vector<Affine2x3> maps = inverse_alignments(landmarks, tmpl, n);
        const WarpPlans wp = warp_plans(
            mode, mode != Resample::bilinear ? alignment_resolutions(landmarks, tmpl, maps, out_w) : std::vector<double>(n),
            out_h, out_w);
        return warp_batch_u8(img, maps, wp, out_h, out_w, swap_rb, threads);
    }, py::arg("image"), py::arg("landmarks"), py::arg("template"), py::arg("height"), py::arg("width"),
       py::arg("swap_rb"), py::arg("threads"), py::arg("resample") = "bicubic");

    m.def("warp_f32", [](const py::handle& image, const py::handle& matrices, int out_h, int out_w,
                         std::vector<float> mean, std::vector<float> std, bool swap_rb, int threads,
                         const std::string& resample) {
        const ImageU8View img = frame_view(image, "image");
        require_size(out_h, "height"); require_size(out_w, "width"); require_threads(threads);
        const PixelNormalization norm = normalization(mean, std, swap_rb);
        const Resample mode = resample_mode(resample);
        std::size_t n = 0;
        const std::vector<Affine2x3> maps = inverse_matrices(matrices, n);
        const WarpPlans wp = warp_plans(mode, map_resolutions(maps, out_w), out_h, out_w);
        return warp_batch_f32(img, maps, wp, out_h, out_w, norm, threads);
    }, py::arg("image"), py::arg("matrices"), py::arg("height"), py::arg("width"), py::arg("mean"), py::arg("std"),
       py::arg("swap_rb"), py::arg("threads"), py::arg("resample") = "bicubic");

    m.def("warp_u8", [](const py::handle& image, const py::handle& matrices, int out_h, int out_w, bool swap_rb,
                        int threads, const std::string& resample) {
        const ImageU8View img = frame_view(image, "image");
        require_size(out_h, "height"); require_size(out_w, "width"); require_threads(threads);
        const Resample mode = resample_mode(resample);
        std::size_t n = 0;
        const std::vector<Affine2x3> maps = inverse_matrices(matrices, n);
        const WarpPlans wp = warp_plans(mode, map_resolutions(maps, out_w), out_h, out_w);
        return warp_batch_u8(img, maps, wp, out_h, out_w, swap_rb, threads);
    }, py::arg("image"), py::arg("matrices"), py::arg("height"), py::arg("width"), py::arg("swap_rb"),
       py::arg("threads"), py::arg("resample") = "bicubic");

    m.def("simd_path", [] { return std::string(simd_path_name(simd_active())); },
          "The vector path the kernels take now: 'avx2+fma', 'neon' or 'scalar'.");
    m.def("simd_available", [] { return std::string(simd_path_name(simd_available())); },
          "The best vector path built in and supported by this CPU.");
    m.def("set_simd_enabled", &set_simd_enabled, py::arg("enabled"),
          "Process-wide: False makes every kernel take its scalar loops (tests and benchmarks).");

    m.def("resize", &resize_batch, py::arg("images"), py::arg("height"), py::arg("width"), py::arg("threads"),
          "Antialiased bicubic resize of an (N, H, W, C) uint8/float32 batch (PIL / torch antialias semantics).");
    m.def("degrade", &degrade_batch, py::arg("crops"), py::arg("sizes"), py::arg("threads"),
          "F_up(F_down,r(I)) per crop: (N, H, W, C) uint8/float32 crops, (N,) int sizes r in [1, W].");

    m.def("equivalent_resolution", [](const py::handle& landmarks) {
        const std::vector<double> lm = points(landmarks, "landmarks", 3, "(N, K, 2)");
        py::array a = py::reinterpret_borrow<py::array>(landmarks);
        const py::ssize_t n = a.shape(0), k = a.shape(1);
        if (k < 2) throw py::value_error("landmarks must have at least 2 points (the eyes) per face, got " + std::to_string(k));
        py::array_t<double> out(n);
        double* r = out.mutable_data();
        for (py::ssize_t i = 0; i < n; ++i) {
            r[i] = equivalent_resolution(lm.data() + i * 2 * k);
            if (!std::isfinite(r[i]))
                throw py::value_error("landmarks[" + std::to_string(i) + "] contains NaN or infinite coordinates");
        }
        return out;
    }, py::arg("landmarks"), "112 * inter-ocular distance / template inter-ocular distance, per face; (N,) float64.");
    m.def("mtcnn_pyramid", &pyramid, py::arg("image"), py::arg("scales"), py::arg("mean"), py::arg("std"),
          py::arg("swap_rb"), py::arg("threads"));
    m.def("mtcnn_pnet_decode", &pnet_decode, py::arg("prob"), py::arg("reg"), py::arg("scale"), py::arg("threshold"),
          py::arg("nms_threshold"),
          "Cells with face probability >= threshold as (K, 9) [x1, y1, x2, y2, score, reg0..3], after NMS.");
    m.def("mtcnn_crops", &candidate_crops, py::arg("image"), py::arg("boxes"), py::arg("size"), py::arg("mean"),
          py::arg("std"), py::arg("swap_rb"), py::arg("threads"));
    m.def("mtcnn_nms", [](const py::handle& boxes_obj, float threshold, const std::string& mode) {
        const std::vector<Candidate> boxes = candidates_from(boxes_obj, "boxes", 5);
        require_unit(threshold, "threshold");
        const OverlapMode m = overlap_mode(mode);
        std::vector<int> keep;
        {
            py::gil_scoped_release release;
            keep = nms(boxes, threshold, m);
        }
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(keep.size()));
        std::copy(keep.begin(), keep.end(), out.mutable_data());
        return out;
    }, py::arg("boxes"), py::arg("threshold"), py::arg("mode"),
       "Greedy NMS over (N, >=5) [x1, y1, x2, y2, score, ...]; kept indices by descending score.");
    m.def("mtcnn_refine", [](const py::handle& boxes_obj, bool square) {
        std::vector<Candidate> boxes = candidates_from(boxes_obj, "boxes", 4);
        for (Candidate& c : boxes) {
            regress(c);
            if (square) make_square(c);
        }
        return candidates_array(boxes);
    }, py::arg("boxes"), py::arg("square"),
       "Applies columns 5-8 as box regression (then squares the boxes when asked); returns (N, 9), reg zeroed.");
    m.def("mtcnn_landmarks", [](const py::handle& boxes_obj, const py::handle& raw_obj) {
        const std::vector<Candidate> boxes = candidates_from(boxes_obj, "boxes", 4);
        py::array raw = as_array(raw_obj, "landmarks");
        if (!has_dtype<float>(raw)) throw py::type_error("landmarks must be float32, got " + dtype_name(raw));
        require_ndim(raw, "landmarks", 2, "(N, 10)");
        require_c_contiguous(raw, "landmarks");
        if (raw.shape(1) != 10 || raw.shape(0) != static_cast<py::ssize_t>(boxes.size()))
            throw py::value_error("landmarks must have shape (N, 10) for N boxes, got " + shape_str(raw));
        const float* p = static_cast<const float*>(raw.data());
        py::array_t<float> out({static_cast<py::ssize_t>(boxes.size()), py::ssize_t{5}, py::ssize_t{2}});
        float* o = out.mutable_data();
        // O-Net gives x1..x5 then y1..y5, as fractions of the (squared) box.
        for (std::size_t i = 0; i < boxes.size(); ++i, p += 10, o += 10) {
            const Candidate& c = boxes[i];
            for (int k = 0; k < 5; ++k) {
                o[2 * k] = c.x1 + p[k] * (c.x2 - c.x1);
                o[2 * k + 1] = c.y1 + p[5 + k] * (c.y2 - c.y1);
            }
        }
        return out;
    }, py::arg("boxes"), py::arg("landmarks"), "O-Net's (N, 10) box-relative landmarks -> (N, 5, 2) frame pixels.");
}
