"""Ling et al. (ling2023, Sec. 3.2-4) MAug + LogExp (p=1) + CosFace, fine-tuning dlib's ResNet (issue 17).

L = lam * L_LogExp(f_HR, f_LR) + CE_HR / 2 + CE_LR / 2 with both branches the fine-tuned network (weights
shared, as in the paper); every HR crop's partner at 7/14/20 px in the ratio 1:1:2 (Sec. 4). Fine-tuning
settings shared with dlib_bt_m (lr 0.001, batch 64, 3 epochs, head at the pretrained class means).
"""

from training.recipes.dlib_bt_m import config as _dlib_bt_m
from training.recipes.maug_logexp_p1 import config as _ling

config = _dlib_bt_m.replace(
    name="dlib_maug_logexp",
    paper="ling2023 Sec. 3.2-3.3, Sec. 4, from dlib's pretrained ResNet",
    method=_ling.method,
    head=_ling.head,
    head_kwargs=dict(_ling.head_kwargs),      # Sec. 4: CosFace s = 48, m = 0.4
    sampler=_ling.sampler,                    # MAug 7:14:20 = 1:1:2
    sampler_kwargs={},
    loss_kwargs=dict(_ling.loss_kwargs),      # lambda = 1, p = 1
    color_jitter=0.0,                         # Sec. 4 names only the horizontal flip
)
