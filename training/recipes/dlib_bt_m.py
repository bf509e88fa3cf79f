"""BT-M (knoche2022 Sec. 6.2) fine-tuning dlib's public-domain ResNet instead of training from scratch (issue 17)."""

from training.recipes.bt_m import config as _bt_m

config = _bt_m.replace(
    name="dlib_bt_m",
    paper="knoche2022 Sec. 6.2, from dlib's pretrained ResNet",
    model="dlib_resnet",
    model_kwargs={},
    init="dlib",
    # Knoche's ArcFace head (s=64, m=0.5) and BT-M batch (half at r in {7,14,28,56,112}) are kept. Fine-tuning a
    # converged network, not Sec. 3.1's from-scratch schedule: lr 0.001 (a tenth of Sec. 3.1's 0.01; at 0.01 a
    # ST-M1 smoke run's feature distance to the frozen network grew 6x in one step), the head starts at the
    # class means of the pretrained embeddings, a short warm-up. Milestones keep Sec. 3.1's shape.
    batch_size=64,
    epochs=3,
    lr=0.001,
    warmup_fraction=0.05,
    lr_milestones=[9 / 16, 13 / 16],
)
