// Equivalent resolution of a face from its landmark geometry (DESIGN section 4).
#pragma once

namespace crres {

// Inter-ocular distance of the ArcFace 112 x 112 template (~35.24 px), computed from the template itself.
double template_interocular();

// 112 * d / template_interocular(), d the distance between the first two landmarks (left eye, right eye) in
// source pixels: the side of the 112-template crop that carries the same number of source pixels.
// `eyes` holds x0, y0, x1, y1. Returns NaN when a coordinate is not finite.
double equivalent_resolution(const double* eyes);

}  // namespace crres
