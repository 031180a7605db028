"""The one restore path: a trained run back from its workdir, ready to generate."""

from __future__ import annotations

import dataclasses

import ml_collections
from absl import logging

from p2p_jax import checkpointing
from p2p_jax.train import state as train_state


@dataclasses.dataclass(frozen=True)
class Restored:
    """A built run (`setup`, its state restored) and the step the state was trained to."""

    setup: train_state.Setup
    step: int

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.setup.config


def restore(config: ml_collections.ConfigDict, workdir: str, step: int | None = None,
            conv_impl: str | None = None) -> Restored:
    """The checkpoint at `step` (default: latest) on this process's mesh; channels the config
    leaves to the data are those the run trained with. `conv_impl` overrides
    `model.conv_impl` (exports use the portable "xla")."""
    setup = train_state.build(config, workdir=workdir, conv_impl=conv_impl)
    state, step = checkpointing.restore_state(workdir, setup.state, step)
    logging.info("restored the checkpoint at step %d from %s", step, workdir)
    return Restored(dataclasses.replace(setup, state=state), step)
