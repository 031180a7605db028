"""Optax optimizers and learning-rate schedules, defined in steps."""

from __future__ import annotations

import ml_collections
import optax

SCHEDULES = ("linear", "cosine", "step", "constant")


def learning_rate_schedule(opt: ml_collections.ConfigDict) -> optax.Schedule:
    """`linear` is the reference's policy: constant for `constant_steps`, then linear decay to 0
    over `decay_steps`."""
    lr = opt.learning_rate
    if opt.schedule == "linear":
        return optax.join_schedules(
            [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, max(opt.decay_steps, 1))],
            [opt.constant_steps])
    if opt.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(opt.decay_steps, 1))
    if opt.schedule == "step":
        return optax.exponential_decay(lr, opt.step_size, opt.step_gamma, staircase=True)
    if opt.schedule == "constant":
        return optax.constant_schedule(lr)
    raise ValueError(f"optimizer.schedule={opt.schedule!r} is not one of {SCHEDULES}")


def make_optimizer(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(learning_rate_schedule(opt), b1=opt.b1, b2=opt.b2)
