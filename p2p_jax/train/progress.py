"""What a training run shows while it runs: in a terminal, a live bar (step, images/s, losses,
ETA) that log lines print above; otherwise (a log file, CI) one short line per logged step.
Every scalar still goes to TensorBoard; `--verbosity=1` also logs them all."""

from __future__ import annotations

import contextlib
import sys
import time

import tqdm
from absl import logging

# Losses shown, in this order, when the step reports them.
_SHOWN = (("g_loss", "G"), ("g_gan", "gan"), ("g_l1", "l1"), ("g_feat", "feat"), ("g_vgg", "vgg"),
          ("d_loss", "D"))


def summary(scalars: dict[str, float]) -> str:
    """'54.2 img/s, G 40.4 (gan 0.792, l1 0.396), D 0.636' from a logged step's scalars."""
    parts = {label: f"{scalars[key]:.3g}" for key, label in _SHOWN if key in scalars}
    losses = [f"G {parts.pop('G')}"] if "G" in parts else []
    inner = [f"{label} {value}" for label, value in parts.items() if label != "D"]
    if losses and inner:
        losses[0] += f" ({', '.join(inner)})"
    if "D" in parts:
        losses.append(f"D {parts['D']}")
    skipped = int(scalars.get("skipped_steps", 0))
    return ", ".join([f"{scalars.get('images_per_sec', 0):.1f} img/s", *losses]
                     + ([f"{skipped} steps skipped"] if skipped else []))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class TrainingProgress(contextlib.AbstractContextManager):
    """Steps start_step+1 .. num_steps; only process 0 shows anything."""

    def __init__(self, start_step: int, num_steps: int, show: bool):
        self._start, self._total = start_step, num_steps
        self._bar = None
        self._live = show and sys.stderr.isatty()
        self._show = show
        self._clock = None  # (step, time) when stepping began: the ETA's rate.
        self._handler, self._emit = None, None

    def __enter__(self) -> TrainingProgress:
        if self._live:
            self._bar = tqdm.tqdm(initial=self._start, total=self._total, unit="step",
                                  dynamic_ncols=True, file=sys.stderr, leave=True)
            # Log lines print above the bar instead of through it.
            self._handler = logging.get_absl_handler().python_handler
            self._emit = self._handler.emit
            self._handler.emit = self._emit_above_bar
        return self

    def _emit_above_bar(self, record) -> None:
        self._bar.clear()
        self._emit(record)
        self._bar.refresh()

    def step(self, step: int) -> None:
        if self._clock is None:
            self._clock = (step - 1, time.perf_counter())
        if self._bar is not None:
            self._bar.update(1)

    def logged(self, step: int, scalars: dict[str, float]) -> None:
        if not self._show:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(summary(scalars), refresh=True)
            return
        first_step, began = self._clock or (self._start, time.perf_counter())
        rate = (step - first_step) / max(time.perf_counter() - began, 1e-9)
        # The first step's time holds one-off work (transfers, the first dispatch): no ETA yet.
        measured = step - first_step > 1 and step < self._total
        eta = f", ETA {_duration((self._total - step) / rate)}" if measured else ""
        logging.info("step %d/%d (%d%%): %s%s", step, self._total, 100 * step // self._total,
                     summary(scalars), eta)

    def evaluated(self, step: int, results: dict[str, float]) -> None:
        if self._show:
            logging.info("eval at step %d: %s", step,
                         ", ".join(f"{k} {v:.4g}" for k, v in sorted(results.items())))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._handler.emit = self._emit
            self._bar.close()
