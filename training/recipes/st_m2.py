"""ST-M2 (knoche2022 Sec. 6.2): five branches 112/56/28/14/7, four distances x25, CE per branch."""

from training.recipes.st_r import config as _st_r

config = _st_r.replace(
    name="st_m2",
    paper="knoche2022 Sec. 6.2",
    # Sec. 6.2: "extends the siamese network to five branches, each branch representing a
    # particular defined resolution (7 px, 14 px, 28 px, 56 px, and 112 px) ... four feature
    # distance losses ... each with a factor of 25 ... the cross-entropy loss for each branch".
    sampler="fixed_branches",
    sampler_kwargs={"sizes": [56, 28, 14, 7]},
)
