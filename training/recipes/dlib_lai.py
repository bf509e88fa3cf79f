"""Lai & Lam (lai2021, Sec. II-B, III) 4-way siamese + cross-resolution triplet, fine-tuning dlib's ResNet (issue 17).

HR, 16, 12 and 8 px branches (bilinear, Sec. III), weights shared, ``L = sum_k AM-softmax_k + lambda * L_CRT``
(eq. 1-4), AM-softmax s = 30, m = 0.35, triplet margin 1, lambda 1. Fine-tuning settings shared with dlib_bt_m
(lr 0.001, head at the pretrained class means) instead of Sec. III's from-scratch schedule.
"""

from training.recipes.dlib_bt_m import config as _dlib_bt_m
from training.recipes.lai_siamese_triplet import config as _lai

config = _dlib_bt_m.replace(
    name="dlib_lai",
    paper="lai2021 Sec. II-B, III, from dlib's pretrained ResNet",
    method=_lai.method,
    head=_lai.head,
    head_kwargs=dict(_lai.head_kwargs),
    sampler=_lai.sampler,
    sampler_kwargs=dict(_lai.sampler_kwargs),
    loss_kwargs=dict(_lai.loss_kwargs),
    flip=_lai.flip,
    color_jitter=0.0,
)
