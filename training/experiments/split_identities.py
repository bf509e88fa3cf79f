"""Split the shared CelebA crops by identity into a fine-tuning set and a held-out threshold set (issue 17).

Thresholds must come from identities that are neither trained on nor in any evaluation set, so a seeded draw of
``--holdout`` CelebA identities is set aside (``<out>/holdout``) and the rest is the training set
(``<out>/train``), both as folders of symlinks into ../shared (nothing is copied; class names ``celeba_<id>``
as in make_data.sh). glint24 is left out entirely: 18 of its 24 identities are LFW people, and LFW is the
accuracy set. CelebA's identities come from CelebFaces, whose authors built it disjoint from LFW.

    python -m training.experiments.split_identities --celeba ../shared/data/train/celeba --out runs/data/dlib_ft
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--celeba", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--holdout", type=int, default=300)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    ids = sorted(d.name for d in args.celeba.iterdir() if d.is_dir())
    if len(ids) <= args.holdout:
        raise SystemExit(f"{len(ids)} identities: cannot hold out {args.holdout}")
    order = np.random.default_rng(args.seed).permutation(len(ids))
    split = {"holdout": sorted(ids[i] for i in order[: args.holdout]),
             "train": sorted(ids[i] for i in order[args.holdout:])}
    for name, members in split.items():
        folder = args.out / name
        tmp = folder.with_name(name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for ident in members:
            link = tmp / f"celeba_{ident}"
            if not link.exists():
                os.symlink((args.celeba / ident).resolve(), link)
        if folder.exists():
            if sorted(p.name for p in folder.iterdir()) != sorted(f"celeba_{i}" for i in members):
                raise SystemExit(f"{folder} exists with other identities; remove it first")
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
        else:
            tmp.rename(folder)
    images = {k: sum(len(os.listdir(args.celeba / i)) for i in v) for k, v in split.items()}
    summary = {"seed": args.seed, "identities": {k: len(v) for k, v in split.items()}, "images": images,
               "train": str(args.out / "train"), "holdout": str(args.out / "holdout")}
    (args.out / "split.json").write_text(json.dumps({**summary, "members": split}, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
