"""Equivalent resolution from landmarks: 112 * inter-ocular distance / 35.24 (DESIGN section 4)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crres_sdk import ARCFACE_TEMPLATE, TEMPLATE_INTEROCULAR, equivalent_resolution

from .helpers import apply, similarity


def test_template_interocular_is_the_design_constant():
    assert TEMPLATE_INTEROCULAR == pytest.approx(35.24, abs=5e-3)


def test_template_face_is_112():
    assert equivalent_resolution(ARCFACE_TEMPLATE) == pytest.approx(112.0)


@given(scale=st.floats(0.02, 30.0), angle=st.floats(-np.pi, np.pi), tx=st.floats(-1e4, 1e4))
def test_scales_with_the_face_and_ignores_rotation_and_position(scale, angle, tx):
    lm = apply(similarity(scale, angle, tx, -tx), ARCFACE_TEMPLATE)
    assert equivalent_resolution(lm) == pytest.approx(112.0 * scale, rel=1e-9)


def test_batch_follows_the_formula():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 1000, (6, 5, 2))
    d = np.hypot(*(lm[:, 1] - lm[:, 0]).T)
    np.testing.assert_allclose(equivalent_resolution(lm), 112.0 * d / 35.24, rtol=1e-4)
    assert equivalent_resolution(lm).shape == (6,)
