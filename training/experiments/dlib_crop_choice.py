"""Which crop should dlib's network see: our 112 template mapped into its chip, or the chip aligned directly?

Issue 17 asks whether a model should bring its own crop geometry (the SDK aligning each model to it) or be
adapted to the canonical 112 template. With the pretrained (not fine-tuned) dlib network and the same MTCNN
landmarks of every LFW View-2 image (the evaluation's aligned-crop cache), this scores the 6,000 pairs
(10-fold accuracy, cosine similarity) two ways:

* ``template_112``: the SDK's 112 crop, mapped into the 150 chip inside the network (what dlib_resnet does);
* ``chip_150``: the photo aligned straight to a 150x150 crop whose 5 template points are the ArcFace points
  sent through ``CHIP_FROM_TEMPLATE`` (the crop a manifest would declare), no intermediate 112 crop.

    python -m training.experiments.dlib_crop_choice --lfw ../shared/data/lfw --json docs/results/dlib_crop_choice.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from crres_sdk import align_faces_uint8
from crres_sdk.preprocess import ARCFACE_TEMPLATE, Normalization
from evaluation.datasets import load_lfw
from evaluation.embedder import preprocess
from evaluation.verification import kfold_accuracy
from training.models import get_model
from training.models.dlib_resnet import CHIP_FROM_TEMPLATE, CHIP_SIZE, DLIB_MEAN_RGB
from training.pretrained import pretrained_file


@torch.no_grad()
def embed(fn, batches: list[np.ndarray]) -> np.ndarray:
    out = [fn(torch.from_numpy(b)).numpy() for b in batches]
    e = np.concatenate(out)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    ds = load_lfw(args.lfw, progress=True)
    with np.load(ds.info["cache"], allow_pickle=False) as z:
        marks = z["landmarks"]
    images = args.lfw / "images" if (args.lfw / "images").is_dir() else args.lfw
    model = get_model("dlib_resnet").load_dlib_file(pretrained_file("dlib_face_recognition_resnet_v1")).eval()
    chip_template = np.hstack([ARCFACE_TEMPLATE, np.ones((5, 1))]) @ CHIP_FROM_TEMPLATE.T
    dlib_input = Normalization(color="rgb", mean=DLIB_MEAN_RGB, std=(256.0,) * 3)

    t0 = time.time()
    rows: dict[str, list[np.ndarray]] = {"template_112": [], "chip_150": []}
    for start in range(0, len(ds.crops), args.batch_size):
        idx = range(start, min(start + args.batch_size, len(ds.crops)))
        rows["template_112"].append(preprocess(ds.crops[idx.start:idx.stop], Normalization.arcface(), 112))
        chips = []
        for k in idx:
            frame = cv2.imread(str(images / ds.image_names[k]), cv2.IMREAD_COLOR)
            chips.append(align_faces_uint8(frame, marks[k][None], size=CHIP_SIZE, template=chip_template)[0])
        rows["chip_150"].append(preprocess(np.stack(chips), dlib_input, CHIP_SIZE))
    embeddings = {"template_112": embed(model, rows["template_112"]), "chip_150": embed(model.net, rows["chip_150"])}
    result = {"pairs": int(ds.n_pairs), "seconds": round(time.time() - t0, 1), "chip_template": chip_template.round(3).tolist()}
    for name, e in embeddings.items():
        scores = np.sum(e[ds.pair_index[:, 0]] * e[ds.pair_index[:, 1]], axis=1)
        res = kfold_accuracy(scores, ds.issame, ds.folds)
        result[name] = {"accuracy": round(100 * res.accuracy, 2), "std": round(100 * res.std, 2)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
