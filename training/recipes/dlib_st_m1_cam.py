"""dlib_st_m1 with Lu & Ebrahimi's camera degradations (lu2023 Sec. II-D) mixed into the fine-tuned branch.

Blur, noise and JPEG each with probability 0.5 ("the probability of applying each corruption ... is set to
0.5"), then the resolution degradation, on the crops of the fine-tuned branch; the frozen HR branch stays the
clean 112 px crop's cached embedding, so the distance term teaches the network to see through the camera.
"""

from training.recipes.dlib_st_m1 import config as _dlib_st_m1

config = _dlib_st_m1.replace(
    name="dlib_st_m1_cam",
    paper="knoche2022 Sec. 6.2 (ST-M1, eq. 7), frozen dlib HR branch, lu2023 Sec. II-D degradations",
    camera_p=0.5,
)
