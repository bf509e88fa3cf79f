"""Ling et al. 2023 (ling2023, Sec. 3.2-4): MAug + LogExp (p=1) + CosFace, L = lam*L_dist + CE/2 + CE/2."""

from training.recipes.base import Recipe

config = Recipe(
    name="maug_logexp_p1",
    paper="ling2023 Sec. 3.2-3.3, Sec. 4 Implementation Details",
    method="ling",
    # Sec. 4: two settings - CASIA-WebFace + ResNet34 (lr 0.1, 28 epochs, /10 at 16 and 24) and
    # MS1M + ResNet50 (lr 0.01, 16 epochs, /10 at 8 and 12). Our training sets are CASIA-sized
    # or smaller, so the CASIA setting is the default; IResNet-34 stands for their ResNet34.
    model="iresnet34",
    model_kwargs={"num_features": 512},   # embedding size not stated; 512 as in CosFace/ArcFace
    head="cosface",
    head_kwargs={"s": 48.0, "m": 0.4},    # Sec. 4: "The s in CosFace loss is set to 48 and m is set to 0.4"
    batch_size=256,                       # Sec. 4: "the batch size is set to 256"
    epochs=28,                            # Sec. 4 (CASIA): "a total of 28 epochs"
    optimizer="sgd",                      # Sec. 4: "SGD momentum ... 0.9, and weight decay was 5e-4"
    lr=0.1,                               # Sec. 4 (CASIA): "initial learning rate was set to 0.1"
    momentum=0.9,
    weight_decay=5e-4,
    lr_milestones=[16 / 28, 24 / 28],     # Sec. 4 (CASIA): "divided by 10 at 16 and 24 epochs"
    lr_gamma=0.1,
    flip=True,                            # Sec. 4: "Random Horizontal Flip"
    color_jitter=0.0,
    # Sec. 4: "7 px: 14 px: 20 px = 1:1:2 ... based on BICUBIC": every HR image gets one LR
    # partner (Sec. 3.3, Fig. 2).
    sampler="maug",
    loss_kwargs={"lam": 1.0, "p": 1.0},   # Sec. 4: "The lambda is set to 1"; eq. 3 (p = 1)
    clip_grad_norm=5.0,                   # not in the paper: arcface_torch's clip_grad_norm_(5)
)
