"""Preemption notices (SIGTERM from TPU VM maintenance, spot reclaim, SLURM, `kill`) and
Ctrl-C.

One process: a SIGTERM or SIGINT handler sets a flag that the loop polls each step, which
finishes the step in flight, saves and exits 0; a second Ctrl-C stops at once, without saving.
Several processes: JAX's preemption sync service (started by `jax.distributed.initialize`)
catches SIGTERM and every process agrees on the same step to save at, through Orbax's
`reached_preemption`; Ctrl-C there interrupts (one process cannot save alone).
"""

from __future__ import annotations

import signal
import threading
import time

import jax
import orbax.checkpoint as ocp
from absl import logging


class PreemptionWatcher:
    def __init__(self, manager: ocp.CheckpointManager):
        self._manager = manager
        self._signalled = threading.Event()
        self._signalled_at: float | None = None
        self._previous = {}
        if jax.process_count() == 1:
            self._previous = {signum: signal.signal(signum, self._on_signal)
                              for signum in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._signalled.is_set():
            raise KeyboardInterrupt  # Ctrl-C twice: the user wants out now.
        logging.warning("%s received: saving a checkpoint after the current step%s",
                        signal.Signals(signum).name,
                        " (Ctrl-C again: stop without saving)" if signum == signal.SIGINT else "")
        self._signalled_at = time.monotonic()
        self._signalled.set()

    def reached(self, step: int) -> bool:
        """True at the step where every process should save and stop."""
        if jax.process_count() == 1:
            return self._signalled.is_set()
        return self._manager.reached_preemption(step)

    def report_exit(self, timeout_s: float) -> None:
        """Logs how long the save-and-exit took, loudly if over the preemption budget."""
        if self._signalled_at is None:
            return
        elapsed = time.monotonic() - self._signalled_at
        if elapsed > timeout_s:
            logging.error("preemption save took %.1f s, over checkpoint.preemption_timeout_s="
                          "%.1f; the machine may be gone before it commits", elapsed, timeout_s)
        else:
            logging.info("preemption save committed %.1f s after the signal", elapsed)

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
