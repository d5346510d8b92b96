"""The shared neural training engine: one :class:`Trainer` for every neural model.

* :mod:`recforge.train.trainer` — :class:`Trainer`, :class:`TrainResult`, validators, devices.
* :mod:`recforge.train.losses` — loss functions and the :class:`Objective` batch-loss hook.
* :mod:`recforge.train.sampling` — vectorised negative samplers.
* :mod:`recforge.train.schedules` — learning-rate schedules as pure functions of the step.
"""

from recforge.train.losses import (
    BPR,
    Objective,
    RatingMSE,
    SampledBCE,
    bce_pos_neg,
    bpr_loss,
    embedding_l2,
    fixed_negatives,
    mse_loss,
    scaled_sigmoid,
)
from recforge.train.sampling import NegativeSampler
from recforge.train.schedules import Schedule
from recforge.train.trainer import (
    Trainer,
    TrainResult,
    Validator,
    build_optimizers,
    objective_validator,
    predict_pairs,
    rating_validator,
    resolve_device,
    seeded,
    threads,
)

__all__ = [
    "BPR",
    "NegativeSampler",
    "Objective",
    "RatingMSE",
    "SampledBCE",
    "Schedule",
    "TrainResult",
    "Trainer",
    "Validator",
    "bce_pos_neg",
    "bpr_loss",
    "build_optimizers",
    "embedding_l2",
    "fixed_negatives",
    "mse_loss",
    "objective_validator",
    "predict_pairs",
    "rating_validator",
    "resolve_device",
    "scaled_sigmoid",
    "seeded",
    "threads",
]
