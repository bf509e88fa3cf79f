"""Ling et al. 2023 with the p=2 LogExp distance (ling2023 eq. 5, Table 4 "Ours(2)")."""

from training.recipes.maug_logexp_p1 import config as _p1

config = _p1.replace(name="maug_logexp_p2", loss_kwargs={"lam": 1.0, "p": 2.0})
