"""ST-M1 (knoche2022 Sec. 6.2): siamese HR + one LR branch with r in {7, 14, 28, 56} per sample."""

from training.recipes.st_r import config as _st_r

config = _st_r.replace(
    name="st_m1",
    paper="knoche2022 Sec. 6.2",
    # Sec. 6.2: "for the LR branch, we randomly pick a resolution from {7, 14, 28, 56} and feed
    # the LR branch with LR images of different resolutions within each batch. The HR branch
    # always takes 112 px images." Uniform choice (the paper names no weights).
    sampler="paug",
    sampler_kwargs={},
)
