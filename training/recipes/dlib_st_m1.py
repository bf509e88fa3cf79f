"""ST-M1 (knoche2022 Sec. 6.2) with dlib's frozen pretrained network as the HR branch (issue 17).

Eq. 7, ``CE_HR + CE_LR + 25 * L_dist``: f_HR is the frozen network's cached embedding of the 112 px crop (its
CE term trains only the head), f_LR the fine-tuned network's embedding of the same crop at r in
{7, 14, 28, 56, 112}. 112 joins Sec. 6.2's {7, 14, 28, 56} because here the HR branch is not the network that
ships: without it nothing would hold the shipped network's own HR embedding to the teacher's.
"""

from training.recipes.dlib_bt_m import config as _dlib_bt_m

config = _dlib_bt_m.replace(
    name="dlib_st_m1",
    paper="knoche2022 Sec. 6.2 (ST-M1, eq. 7), frozen dlib HR branch",
    method="frozen_siamese",
    sampler="bt_m",
    sampler_kwargs={"fraction": 1.0, "sizes": [7, 14, 28, 56, 112]},
    loss_kwargs={"dist_weight": 25.0},   # Sec. 5.2: "weighted with a factor of 25"
)
