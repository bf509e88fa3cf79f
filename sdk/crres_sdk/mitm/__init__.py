"""Meet-in-the-middle matching (Grm, Oezata, Struc, Ekenel 2023): degrade the gallery, super-resolve the probe,
match resolutions and fuse over hypotheses and scales. Training-free; numpy + OpenCV only (never torch).

Paper: ``shared/seeds/grm2023_meet_in_the_middle.txt``. What each part implements:

* **Gallery degradations** (Sec. 3.2, Table 1): the 11 functions ``DEGRADATIONS`` with the stated parameters
  (noise variance 0.02, motion window 20, Gaussian sigma 1.1 / window 5, disk radius 5); where Table 1 gives no
  parameter ("randomly change hue and saturation", "random perspective/shear", the down-up factor, the patch
  size) ours are documented on each function. Every function maps a uint8 ``H x W x 3`` image to one of the same
  size, deterministically for a given ``numpy.random.Generator`` state. The three blurs' pixel sizes stay in
  pixels at every chain step by default (``kernel_scaling="literal"``, the paper's text); ``"image"`` scales them
  with the chain's current image, read at 112 px (our deviation; see ``apply_chain`` and docs/mitm.md).
* **Chains** (eq. 1, Fig. 2): every path of length 1..3 through the 11 options (``enumerate_chains``: 11 + 11^2 +
  11^3 = 1463), with a x2 antialiased bicubic downsampling (``crres_sdk.preprocess.resize_bicubic``, the SDK's one
  definition of resolution) between consecutive steps: ``G_H = rho3(down2(rho2(down2(rho1(G)))))``.
* **Resolution matching** (Sec. 3.2 end, Sec. 4.2): a gallery hypothesis is resized to the size of the
  (super-resolved) probe, then to the recognition network's input size (``match_resolution``).
* **Multi-hypothesis face hallucination** (Sec. 3.3): 16 versions of the low-resolution probe blurred with a
  Gaussian of sigma 0..1, each super-resolved x2/x4/x8 by an SR callable (``OnnxSuperResolver`` runs the EDSR
  models ``python -m training.sr`` exports; without one, bicubic upsampling stands in).
* **Fusion** (Sec. 3.4, eqs. 3-5, Fig. 4, Tables 2-3): correlation similarity, T_add, T_concat, S_add, S_max and
  their combinations; the default ``"smax_sadd"`` is the paper's best (Sec. 4.2 last paragraph): S_max over the
  gallery hypotheses (and, per Sec. 3.3, over the probe's blur hypotheses), then S_add over the probe scales.

``MitmMatcher`` puts it together around any ``embed(crops_uint8_bgr) -> (N, D)`` callable; gallery templates
are computed once at enrolment (``gallery_templates``: flat ``(K, D)`` templates with the ``(K,)`` matched size
each was made at, which is what :class:`crres_sdk.Gallery` stores), so a probe costs blur_levels x scales SR
runs and embeddings.

Layout
    One module per concern, each importing only those before it: :mod:`~crres_sdk.mitm.degradations` (Table 1),
    :mod:`~crres_sdk.mitm.chains` (eq. 1 chains and resolution matching: the gallery side),
    :mod:`~crres_sdk.mitm.hypotheses` (Sec. 3.3: the probe side), :mod:`~crres_sdk.mitm.fusion` (Sec. 3.4) and
    :mod:`~crres_sdk.mitm.matcher` (``MitmMatcher``, which puts them together); :mod:`~crres_sdk.mitm.sr` holds
    ``OnnxSuperResolver`` and :mod:`~crres_sdk.mitm._checks` the input checks they share. Everything the single
    module ``crres_sdk/mitm.py`` defined is imported here: use ``crres_sdk.mitm``.
"""

# Every public name of the former single module (its private helpers stay in their submodules).
from crres_sdk.mitm.degradations import (  # noqa: F401
    BRIGHTNESS_RANGE,
    CONTRAST_RANGE,
    DEFAULT_KERNEL_SCALING,
    DEGRADATIONS,
    DEGRADATION_NAMES,
    DISK_RADIUS,
    GAUSSIAN_SIGMA,
    GAUSSIAN_WINDOW,
    DOWN_UP_FACTOR,
    HUE_SHIFT,
    KERNEL_REFERENCE,
    KERNEL_SCALINGS,
    MOTION_WINDOW,
    NOISE_VARIANCE,
    PATCH_SIZE,
    PERSPECTIVE_SHIFT,
    SATURATION_RANGE,
    SCALED_BLURS,
    SHEAR_RANGE,
    apply_degradation,
    brightness_jitter,
    color_jitter,
    disk_blur,
    disk_kernel,
    down_up,
    down_up_size,
    gaussian_blur,
    gaussian_kernel,
    gaussian_noise,
    gaussian_params,
    motion_blur,
    motion_kernel,
    motion_window,
    patch_shuffle,
    perspective,
    perspective_matrix,
    shear,
    speckle_noise,
)
from crres_sdk.mitm.chains import (  # noqa: F401
    apply_chain,
    count_chains,
    downsample2,
    enumerate_chains,
    match_resolution,
    sample_chains,
)
from crres_sdk.mitm.hypotheses import (  # noqa: F401
    BLUR_LEVELS,
    MAX_BLUR_SIGMA,
    SR_SCALES,
    SuperResolver,
    bicubic_sr,
    blur_hypotheses,
    blur_sigmas,
    gaussian_blur_sigma,
    probe_hypotheses,
    probe_lowres,
)
from crres_sdk.mitm.fusion import (  # noqa: F401
    FUSIONS,
    correlation_similarity,
    fuse,
    fuse_scores,
    s_add,
    s_max,
    similarity_tensor,
    t_add,
    t_concat,
)
from crres_sdk.mitm.matcher import (  # noqa: F401
    DEFAULT_MATCH_SIZES,
    Embedder,
    MitmMatcher,
    ProbeTemplates,
)
from crres_sdk.mitm.sr import (  # noqa: F401
    OnnxSuperResolver,
)
