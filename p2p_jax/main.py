"""Command line: `python -m p2p_jax.main --config=configs/default.py --workdir=DIR`.

Flags only; the work happens in `trainer.train_and_evaluate`.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from p2p_jax import parallel, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (ml_collections).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, summaries and samples go.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "HOST:PORT of process 0, for multi-process runs outside TPU VM pods and SLURM (which are "
    "detected automatically).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(py_logging.Filter):
    """Orbax logs every save step by step at INFO; keep its warnings and errors only."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    logging.info("config:\n%s", _CONFIG.value)
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
