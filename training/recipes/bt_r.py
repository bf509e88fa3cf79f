"""BT-r (knoche2022 Sec. 5.1): half of every batch reduced to one resolution r, plain ArcFace."""

from training.recipes.baseline import config as _baseline

config = _baseline.replace(
    name="bt_r",
    paper="knoche2022 Sec. 5.1",
    # Sec. 5.1: "randomly select half of the images per batch and synthetically reduce their
    # resolution"; r in {5..22, 28, 56} were trained, one model each. r=14 by default
    # (override sampler_kwargs={"r": 7} etc.). Sec. 5: "All training parameters are set according
    # to our baseline (cf. section 3)", 16 epochs.
    sampler="bt_r",
    sampler_kwargs={"r": 14, "fraction": 0.5},
)
