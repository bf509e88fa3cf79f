// Timing harness of the align kernels alone (no Python): bench_preprocess's align case, 16 faces at random
// scales (0.3-3x the template) and rotations (+-0.6 rad) in a random 1920x1080 frame, to a normalised
// (16, 3, 112, 112) float32 batch on one thread. Prints the median CPU time per face with every face warped
// bilinear, and with the faces smaller than the crop warped matched (matched.hpp) or bicubic straight to the
// crop, with the vector path and with the scalar loops.
//   cpp/tests/run.sh bench [repeats] [vector|all] [landmarks.txt ...]
// "vector" skips the scalar loops (e.g. under perf record); landmark files (16 lines of x0 y0 .. x4 y4, such as
// bench_preprocess's faces written by numpy.savetxt) replace the harness's own random faces.
//   cpp/tests/run.sh compare REV [repeats] [landmarks.txt ...]
// builds this file with CRRES_BENCH_BASE and git revision REV's cpp/warp.cpp in namespace crres::base, and also
// times that warp against this checkout's, alternating the two every repeat in one process: on a shared machine
// the ratio of two runs minutes apart means little, the ratio within one process does.
#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "matched.hpp"
#include "simd.hpp"
#include "similarity.hpp"
#include "warp.hpp"

#ifdef CRRES_BENCH_BASE
namespace crres::base {  // the warp of another revision (run.sh compare)
void warp_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                     const PixelNormalization& norm, float* out);
void warp_to_hwc_u8(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w, bool swap_rb,
                    std::uint8_t* out);
void warp_bicubic_to_chw_f32(const ImageU8View& src, const Affine2x3& dst_to_src, int out_h, int out_w,
                             const PixelNormalization& norm, float* out, std::vector<float>& scratch);
}  // namespace crres::base
#endif

namespace {

using namespace crres;

constexpr int kFaces = 16, kSize = 112;

struct Face {
    Affine2x3 map;  // dst -> src
    int small_w;    // matched width, kSize: bilinear
};

Face face_from_landmarks(const double lm[2 * kTemplatePoints]) {
    Affine2x3 fwd, inv;
    estimate_similarity(lm, kArcFaceTemplate112, kTemplatePoints, fwd);
    invert_affine(fwd, inv);
    const double eyes = std::hypot(lm[2] - lm[0], lm[3] - lm[1]);
    const double t_eyes = std::hypot(kArcFaceTemplate112[2] - kArcFaceTemplate112[0],
                                     kArcFaceTemplate112[3] - kArcFaceTemplate112[1]);
    return {inv, matched_width(kSize * eyes / t_eyes, kSize)};
}

std::vector<Face> random_faces(std::mt19937& rng, double scale_lo, double scale_hi) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<Face> out;
    for (int f = 0; f < kFaces; ++f) {
        const double s = scale_lo + (scale_hi - scale_lo) * u(rng), a = -0.6 + 1.2 * u(rng);
        const double cx = 200 + 1520 * u(rng), cy = 200 + 680 * u(rng);
        double lm[2 * kTemplatePoints];
        for (std::size_t k = 0; k < kTemplatePoints; ++k) {
            const double x = kArcFaceTemplate112[2 * k] - 56.0, y = kArcFaceTemplate112[2 * k + 1] - 56.0;
            lm[2 * k] = s * (std::cos(a) * x - std::sin(a) * y) + cx;
            lm[2 * k + 1] = s * (std::sin(a) * x + std::cos(a) * y) + cy;
        }
        out.push_back(face_from_landmarks(lm));
    }
    return out;
}

// kFaces lines of 10 numbers (x0 y0 ... x4 y4), e.g. bench_preprocess's faces written with numpy.savetxt.
std::vector<Face> faces_from_file(const char* path) {
    std::vector<Face> out;
    std::FILE* f = std::fopen(path, "r");
    if (f == nullptr) return out;
    double lm[2 * kTemplatePoints];
    for (int i = 0; i < kFaces; ++i) {
        for (double& v : lm)
            if (std::fscanf(f, "%lf", &v) != 1) break;
        out.push_back(face_from_landmarks(lm));
    }
    std::fclose(f);
    return out;
}

// This thread's CPU time, not wall time: the development VM is shared, and time slices lost to other jobs
// would otherwise dominate the spread.
double thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

[[maybe_unused]] double median(std::vector<double> v) {  // (used by the compare build only)
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

template <typename Fn>
double median_us_per_face(int repeats, Fn&& fn) {
    std::vector<double> t(static_cast<std::size_t>(repeats));
    for (int i = 0; i < 5; ++i) fn();
    for (double& v : t) {
        const double start = thread_cpu_us();
        fn();
        v = (thread_cpu_us() - start) / kFaces;
    }
    std::nth_element(t.begin(), t.begin() + repeats / 2, t.end());
    return t[static_cast<std::size_t>(repeats / 2)];
}

}  // namespace

int main(int argc, char** argv) {
    const int repeats = argc > 1 ? std::atoi(argv[1]) : 300;
    const bool vector_only = argc > 2 && std::string_view(argv[2]) == "vector";  // skip the scalar loops
    std::mt19937 rng(0);
    const int h = 1080, w = 1920;
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(h) * w * 3);
    for (std::uint8_t& p : pixels) p = static_cast<std::uint8_t>(rng() & 255u);
    const ImageU8View frame{pixels.data(), h, w, 3, std::ptrdiff_t{w} * 3};
    PixelNormalization norm;
    norm.swap_rb = true;
    for (int c = 0; c < 3; ++c) norm.scale[c] = 1.f / 128.f, norm.bias[c] = -127.5f / 128.f;
    const std::size_t per_face = std::size_t{3} * kSize * kSize;
    std::vector<float> out(per_face * kFaces);

    // Face sets: argv[3..] are landmark files; by default bench_preprocess's two distributions.
    std::vector<std::pair<std::string, std::vector<Face>>> sets;
    for (int a = 3; a < argc; ++a) sets.emplace_back(argv[a], faces_from_file(argv[a]));
    if (sets.empty()) {
        sets.emplace_back("random", random_faces(rng, 0.3, 3.0));
        sets.emplace_back("small", random_faces(rng, 12.0 / 112, 100.0 / 112));
    }
    for (const auto& [set, fs] : sets) {
        if (fs.size() != kFaces) {
            std::printf("%s: cannot read %d faces\n", set.c_str(), kFaces);
            return 1;
        }
        std::map<int, MatchedPlan> plans;
        int n_matched = 0;
        for (const Face& f : fs)
            if (f.small_w < kSize) ++n_matched, plans.emplace(f.small_w, make_matched_plan(kSize, kSize, f.small_w));
        MatchedScratch scratch;
        enum class Small { bilinear, matched, bicubic };  // how faces smaller than the crop are warped
        const auto batch = [&](float* dst, Small mode) {
            for (int i = 0; i < kFaces; ++i) {
                const Face& f = fs[static_cast<std::size_t>(i)];
                float* face = dst + i * per_face;
                if (mode == Small::matched && f.small_w < kSize)
                    warp_matched_to_chw_f32(frame, f.map, plans.at(f.small_w), kSize, kSize, norm, face, scratch);
                else if (mode == Small::bicubic && f.small_w < kSize)
                    warp_bicubic_to_chw_f32(frame, f.map, kSize, kSize, norm, face, scratch.region);
                else
                    warp_to_chw_f32(frame, f.map, kSize, kSize, norm, face);
            }
        };
        for (bool simd : {true, false}) {
            if (!simd && vector_only) break;
            set_simd_enabled(simd);
            const double bil = median_us_per_face(repeats, [&] { batch(out.data(), Small::bilinear); });
            const double mat = median_us_per_face(repeats, [&] { batch(out.data(), Small::matched); });
            const double cub = median_us_per_face(repeats, [&] { batch(out.data(), Small::bicubic); });
            std::printf("%-6s faces (%2d smaller than the crop), %-8s: bilinear %6.1f us/face, matched %6.1f, "
                        "bicubic %6.1f\n", set.c_str(), n_matched, simd_path_name(simd_active()), bil, mat, cub);
        }
        set_simd_enabled(true);
#ifdef CRRES_BENCH_BASE
        // This checkout's warp against crres::base's, alternating (which goes first alternates too); float CHW
        // bilinear, uint8 HWC bilinear, and the default (bicubic for faces smaller than the crop).
        std::vector<float> out_base(out.size());
        std::vector<std::uint8_t> u8(per_face * kFaces), u8_base(u8.size());
        std::vector<float> region;
        const auto run = [&](bool base, int kind) {
            for (int i = 0; i < kFaces; ++i) {
                const Face& f = fs[static_cast<std::size_t>(i)];
                float* face = (base ? out_base.data() : out.data()) + i * per_face;
                if (kind == 1) {
                    (base ? base::warp_to_hwc_u8 : warp_to_hwc_u8)(frame, f.map, kSize, kSize, true,
                                                                   (base ? u8_base : u8).data() + i * per_face);
                } else if (kind == 2 && f.small_w < kSize) {
                    (base ? base::warp_bicubic_to_chw_f32 : warp_bicubic_to_chw_f32)(frame, f.map, kSize, kSize, norm,
                                                                                     face, region);
                } else {
                    (base ? base::warp_to_chw_f32 : warp_to_chw_f32)(frame, f.map, kSize, kSize, norm, face);
                }
            }
        };
        const char* kinds[3] = {"bilinear float", "bilinear uint8", "default float"};
        for (int kind = 0; kind < 3; ++kind) {
            for (int i = 0; i < 5; ++i) run(false, kind), run(true, kind);
            std::vector<double> t_base, t_new, ratio;
            for (int r = 0; r < repeats; ++r) {
                double t[2];
                for (int k = 0; k < 2; ++k) {
                    const bool base = (k == 0) == (r % 2 == 0);
                    const double start = thread_cpu_us();
                    run(base, kind);
                    t[base ? 0 : 1] = (thread_cpu_us() - start) / kFaces;
                }
                t_base.push_back(t[0]), t_new.push_back(t[1]), ratio.push_back(t[0] / t[1]);
            }
            double worst = 0.0;
            if (kind == 1)
                for (std::size_t i = 0; i < u8.size(); ++i) worst = std::max(worst, std::abs(u8[i] - u8_base[i]) + 0.0);
            else
                for (std::size_t i = 0; i < out.size(); ++i)
                    worst = std::max(worst, 128.0 * std::fabs(double(out[i]) - out_base[i]));
            std::printf("%-6s %s: base %6.1f us/face, this checkout %6.1f (median of per-repeat ratios %.2fx); "
                        "max difference %.4f grey levels\n", set.c_str(), kinds[kind], median(t_base), median(t_new),
                        median(ratio), worst);
        }
#endif
    }
    return 0;
}
