"""Knoche et al. 2022 baseline (knoche2022, Sec. 3.1): ArcFace ResNet-50 on HR images only."""

from training.recipes.base import Recipe

config = Recipe(
    name="baseline",
    paper="knoche2022 Sec. 3.1",
    method="batch",
    # Sec. 3.1: ResNet-50 backbone, dropout then a 512-d bottleneck, ArcFace. The paper's is a
    # bottleneck ResNet-50 (4x4x2048 output); we use arcface_torch's IResNet-50 (same depth, the
    # network [3] trains), dropout 0.5 ("the dropout rate ... 0.5").
    model="iresnet50",
    model_kwargs={"num_features": 512, "dropout": 0.5},
    head="arcface",
    head_kwargs={"s": 64.0, "m": 0.5},  # Sec. 3.1: "all training parameters ... according to [3]" (ArcFace)
    batch_size=128,                      # Sec. 3.1: "a smaller batch-size of 128"
    epochs=16,                           # Sec. 3.1: "In total, we train for 16 epochs"
    optimizer="sgd",                     # Sec. 3.1: "momentum SGD optimizer"
    lr=0.01,                             # Sec. 3.1: "The learning rate is set to 0.01"
    momentum=0.9,                        # not stated; ArcFace [3]'s 0.9
    weight_decay=5e-4,                   # Sec. 3.1: "weight decay ... 5e-4"
    lr_milestones=[9 / 16, 13 / 16],     # Sec. 3.1: "decreased by a factor of 10 after epoch 9 and epoch 13"
    lr_gamma=0.1,
    # Sec. 3.1: "random brightness and saturation variations, left-right flipping, and random
    # cropping". Magnitudes are not given: we use +-20 % brightness/saturation; random cropping is
    # not reproduced (it would move the aligned landmarks away from the shared template).
    flip=True,
    color_jitter=0.2,
    sampler="none",
    clip_grad_norm=5.0,                  # not in the paper: arcface_torch's clip_grad_norm_(5)
)
