"""Lu & Ebrahimi 2023 teacher (lu2023, Sec. II-C-1, III-A-2): ResNet + ArcFace on HR images only."""

from training.recipes.base import Recipe

config = Recipe(
    name="lu_teacher",
    paper="lu2023 Sec. II-C-1, Sec. III-A-2",
    method="batch",
    # Sec. III-A-2: "the teacher network leverages ResNet as a backbone"; depth not stated - we
    # use IResNet-50 and the student waveresnet50 (same stage shapes, needed by eq. 3).
    model="iresnet50",
    model_kwargs={"num_features": 512},
    head="arcface",
    head_kwargs={"s": 64.0, "m": 0.5},  # eq. 1 is ArcFace; s, m not stated: ArcFace's defaults
    batch_size=128,                      # Sec. III-A-2: "a batch size of 128"
    epochs=18,                           # Sec. III-A-2: "trained for 18 epochs using the SGD optimizer"
    optimizer="sgd",
    lr=0.1,                              # Sec. III-A-2: "initially set to be 0.1"
    momentum=0.9,                        # not stated: 0.9
    weight_decay=5e-4,                   # not stated: ArcFace's 5e-4
    lr_milestones=[10 / 18, 13 / 18, 16 / 18],  # Sec. III-A-2: "divided by 10 at 10, 13, and 16 epochs"
    lr_gamma=0.1,
    flip=True,                           # not stated: horizontal flip (arcface_torch default)
    sampler="none",                      # "The teacher network is trained on HR images only"
    clip_grad_norm=5.0,
)
