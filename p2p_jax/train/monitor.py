"""A warning when a run goes wrong: D winning outright, or G's adversarial loss diverging.

Both show in the logged losses long before the samples look broken: a discriminator whose
loss stays near zero gives the generator no useful gradient (the collapse behind most "my
results got worse after epoch N" reports), and a generator GAN loss that keeps climbing is the
same failure seen from G. The watch reads the losses the loop logs anyway (no extra work on
the device) and says so once per episode, with the step it began.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from absl import logging


@dataclasses.dataclass
class InstabilityWatch:
    """`update(step, scalars)` with each logged window's mean losses; returns 1.0 while the run
    is unstable (D's loss under `d_loss_floor`, or G's GAN loss over `g_gan_ceiling`, both per
    discriminator scale, for `window_steps` in a row), else 0.0."""

    window_steps: int
    d_loss_floor: float
    g_gan_ceiling: float
    since: int | None = None  # The first logged step of the current unhealthy stretch.
    warned: bool = False

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> InstabilityWatch:
        scales = config.model.num_d if config.model.discriminator == "multiscale" else 1
        monitor = config.monitor
        return cls(monitor.window_steps, monitor.d_loss_floor * scales,
                   monitor.g_gan_ceiling * scales)

    def _reason(self, scalars: dict[str, float]) -> str | None:
        if scalars["d_loss"] < self.d_loss_floor:
            return (f"the discriminator's loss is under {self.d_loss_floor:g} (it wins "
                    "outright: the generator gets no useful gradient)")
        if scalars["g_gan"] > self.g_gan_ceiling:
            return f"the generator's GAN loss is over {self.g_gan_ceiling:g} (it diverges)"
        return None

    def update(self, step: int, scalars: dict[str, float]) -> float:
        if not self.window_steps:
            return 0.0
        reason = self._reason(scalars)
        if reason is None:
            self.since, self.warned = None, False
            return 0.0
        if self.since is None:
            self.since = step
        if step - self.since < self.window_steps:
            return 0.0
        if not self.warned:
            logging.warning(
                "training looks unstable since step %d: %s (d_loss %.4g, g_gan %.4g at step "
                "%d). Lower optimizer.d_learning_rate, raise loss.lambda_l1, or resume from an "
                "earlier checkpoint (see docs/training.md)", self.since, reason,
                scalars["d_loss"], scalars["g_gan"], step)
            self.warned = True
        return 1.0
