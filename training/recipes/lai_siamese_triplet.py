"""Lai & Lam 2021 (lai2021, Sec. II-B, III): 4-way siamese HR/16/12/8, AM-softmax + CR triplet."""

from training.recipes.base import Recipe

config = Recipe(
    name="lai_siamese_triplet",
    paper="lai2021 Sec. II-B, Sec. III",
    method="lai",
    # Sec. III: "a 20-layer ResNet" (SphereFace-20) on 128x128 faces; our canonical crop is 112,
    # which lai_resnet20 accepts (input_size=112). 512-d features (SphereFace's; not stated).
    model="lai_resnet20",
    model_kwargs={"num_features": 512, "input_size": 112},
    head="amsoftmax",
    head_kwargs={"s": 30.0, "m": 0.35},   # Sec. III: "s and m ... set to 30 and 0.35"
    # Sec. III: "N is 128 (i.e., 512 images from 128 subjects in a mini-batch)": 128 HR samples,
    # each also at 16, 12, 8 px. Our sampler draws images uniformly, so a batch may repeat a
    # subject; the triplet loss then never uses same-label samples as negatives (losses.py).
    batch_size=128,
    # Sec. III: "Training is finished at 100K iterations", VGGFace2 (3.31M images):
    # 100k x 128 / 3.31M ~ 3.9 passes, so 4 epochs; milestones "40K, 60K, 80K" of 100K.
    epochs=4,
    optimizer="sgd",
    lr=0.1,                               # Sec. III: "initialized at 0.1"
    momentum=0.9,                         # Sec. III: "momentum of 0.9"
    weight_decay=5e-4,                    # Sec. III: "weight decay parameter of 5e-4"
    lr_milestones=[0.4, 0.6, 0.8],        # Sec. III: "divided by 10 at 40K, 60K, 80K iterations"
    lr_gamma=0.1,
    flip=False,                           # Sec. III names no augmentation
    # Sec. II-B: K=4 branches, 128 (HR), 16, 12, 8 px; Sec. III: "the bilinear kernel is used".
    sampler="lai",
    sampler_kwargs={"sizes": [16, 12, 8], "mode": "bilinear"},
    loss_kwargs={"lam": 1.0, "margin": 1.0},  # Sec. II-B: lambda "empirically set" to 1; eq. 3 margin 1
    clip_grad_norm=5.0,                   # not in the paper: arcface_torch's clip_grad_norm_(5)
)
