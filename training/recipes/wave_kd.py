"""Lu & Ebrahimi 2023 (lu2023, Sec. II-B-D, III-A-2): WaveResNet student distilled from an HR teacher.

The teacher is a final checkpoint of ``lu_teacher`` (``--teacher PATH``); it must have the same
number of classes (same data) and stage shapes as the student.
"""

from training.recipes.lu_teacher import config as _teacher

config = _teacher.replace(
    name="wave_kd",
    paper="lu2023 Sec. II-B, II-C, II-D, Sec. III-A-2",
    method="lu_kd",
    model="waveresnet50",                # Sec. II-B: WaveResNet, "the same amount of parameters" as the teacher
    model_kwargs={"num_features": 512},
    # Sec. II-D: blur / noise / JPEG each with p = 0.5, then bicubic down to a random size and
    # (Sec. III-A-2) back up to 112. Size range not stated: r ~ U{7..112}.
    sampler="lu",
    sampler_kwargs={"p": 0.5, "size_range": [7, 112]},
    # Sec. III-A-2: "lambda_1 = 1 and lambda_2 = 0.05"; the temperature T of eq. 2 is not given:
    # we use T = 4 (Hinton et al.'s common choice).
    loss_kwargs={"lambda1": 1.0, "lambda2": 0.05, "temperature": 4.0},
    teacher=None,                        # required at run time: --teacher PATH / teacher=PATH
)
