"""Training's scalars, sample grids and config mirrored to Weights & Biases (`config.wandb`), as
the reference's `--use_wandb`. Without a login it runs offline (`wandb sync` uploads later),
so a machine with no network keeps its history; a resumed run continues the same W&B run."""

from __future__ import annotations

import netrc
import os
import uuid
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
from etils import epath

from p2p_jax import fileio

RUN_ID_FILE = "wandb_run_id"  # In the workdir: the W&B run a resume continues.


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbWriter:
    """A writer of `eval.summaries.Writers` (process 0 only)."""

    def __init__(self, settings: ml_collections.ConfigDict, workdir: str):
        import wandb  # The optional extra: `pip install 'p2p_jax[wandb]'`.

        self._wandb = wandb
        id_path = epath.Path(workdir) / RUN_ID_FILE
        if id_path.exists():
            run_id = id_path.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            fileio.write_text(id_path, run_id)
        mode = settings.mode
        if mode == "auto":
            mode = "online" if _logged_in() else "offline"
        local = workdir if "://" not in workdir else os.getcwd()  # W&B writes local files.
        self._run = wandb.init(project=settings.project, entity=settings.entity or None,
                               name=settings.name or epath.Path(workdir).name, id=run_id,
                               resume="allow", mode=mode, dir=local)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self._run.log({key: float(value) for key, value in scalars.items()}, step=step)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        logged = {}
        for key, batch in images.items():
            batch = np.asarray(batch)
            pictures = [self._wandb.Image(picture) for picture in batch]
            logged[key] = pictures[0] if len(pictures) == 1 else pictures
        self._run.log(logged, step=step)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._run.config.update(dict(hparams), allow_val_change=True)

    def close(self) -> None:
        self._run.finish()
