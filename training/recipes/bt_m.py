"""BT-M (knoche2022 Sec. 6.2): half of every batch at r uniform in {7, 14, 28, 56, 112}."""

from training.recipes.baseline import config as _baseline

config = _baseline.replace(
    name="bt_m",
    paper="knoche2022 Sec. 6.2",
    # Sec. 6.2: "randomly picking a different resolution in {7, 14, 28, 56, 112} ... The
    # probability of each resolution is set to be equal", applied to the BT half of the batch
    # (Sec. 5.1). Baseline parameters otherwise (Sec. 5).
    sampler="bt_m",
    sampler_kwargs={"fraction": 0.5, "sizes": [7, 14, 28, 56, 112]},
)
