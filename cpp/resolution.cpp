#include "resolution.hpp"

#include <cmath>
#include <limits>

#include "similarity.hpp"

namespace crres {

double template_interocular() {
    const double* t = kArcFaceTemplate112;
    return std::hypot(t[2] - t[0], t[3] - t[1]);
}

double equivalent_resolution(const double* eyes) {
    for (int i = 0; i < 4; ++i)
        if (!std::isfinite(eyes[i])) return std::numeric_limits<double>::quiet_NaN();
    static const double kScale = kTemplateSize / template_interocular();
    return kScale * std::hypot(eyes[2] - eyes[0], eyes[3] - eyes[1]);
}

}  // namespace crres
