"""evaluation/shrink_filters.py: the variants are the operations they are named after."""

import cv2
import numpy as np

from crres_sdk import align_faces_uint8, degrade, estimate_similarity
from evaluation import shrink_filters as sf
from evaluation.open_set import shrink_photo
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr


def test_keys_warp_with_opencvs_parameter_is_opencvs_cubic_warp():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (40, 50, 3)).astype(np.uint8), (3, 3), 1)
    c, s = 2.3 * np.cos(0.2), 2.3 * np.sin(0.2)
    m = np.array([[c, -s, 10.0], [s, c, -5.0]])
    ours = sf.keys_warp(img, m, 112, -0.75).astype(int)
    cv = cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(ours - cv)[10:100, 10:100].max() <= 1  # OpenCV's fixed-point weights


def test_variants_make_the_named_crops():
    photo = astronaut_bgr()
    marks = ASTRONAUT_LANDMARKS[None].astype(np.float64)
    hr = align_faces_uint8(photo, marks)
    images = np.array([0])

    def load(i):
        return photo

    r = 16
    np.testing.assert_array_equal(sf.second_crops("crop_bicubic", hr, load, marks, images, r), degrade(hr, r))
    small, lm, _ = shrink_photo(photo, marks[0], r)
    np.testing.assert_array_equal(sf.second_crops("photo_area", hr, load, marks, images, r)[0],
                                  align_faces_uint8(small, lm[None], resample="matched")[0])
    cubic = cv2.warpAffine(small, estimate_similarity(lm), (112, 112), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(sf.second_crops("photo_area_cubic", hr, load, marks, images, r)[0], cubic)
