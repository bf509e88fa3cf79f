"""ST-r (knoche2022 Sec. 5.2): siamese HR + LR(r) branches, CE on both + 25 x cosine distance."""

from training.recipes.baseline import config as _baseline

config = _baseline.replace(
    name="st_r",
    paper="knoche2022 Sec. 5.2",
    method="siamese",
    # Sec. 5.2: two weight-shared branches, 112 px and r; r in {5,6,7,8,12,14,20,28,56} were
    # trained, one model each; r=14 by default. Loss eq. 7 with the distance x25
    # (training.losses.knoche_siamese_loss). Both branches run as one concatenated batch (one
    # forward; BatchNorm sees HR and LR together - the paper does not say how its BN was handled).
    sampler="st_r",
    sampler_kwargs={"r": 14},
    loss_kwargs={"dist_weight": 25.0},  # Sec. 5.2: "multiply the feature distance loss by a factor of 25"
)
