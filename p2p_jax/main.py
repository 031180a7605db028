"""Command line: `python -m p2p_jax.main --config=configs/default.py --workdir=DIR [--mode=...]`.

  --mode=train    (default) train, resuming from the latest checkpoint in DIR
  --mode=eval     the whole `eval.split` through a checkpoint: DIR/eval/<split>_<step>/
                  (metrics.json, index.html, curves.png, contact_sheet.png, images/)
  --mode=predict  translate --input (an image or a folder, any sizes) into --output
  --mode=export   the generator as a TF SavedModel and StableHLO into --output

Flags only; the work happens in `trainer`, `report`, `inference` and `export`.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from p2p_jax import export, host, inference, parallel, report, trainer

MODES = ("train", "eval", "predict", "export")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (ml_collections).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, summaries and samples go.")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do; see the module docstring.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step for eval/predict/export; "
                             "default: the latest.")
_INPUT = flags.DEFINE_string("input", None, "predict: an image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "predict/export: the output folder.")
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


def _required(flag, mode: str) -> str:
    if not flag.value:
        raise app.UsageError(f"--mode={mode} needs --{flag.name}")
    return flag.value


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, workdir, mode = _CONFIG.value, _WORKDIR.value, _MODE.value
    if config.hugepage_malloc:
        host.restart_with_hugepage_malloc()
    logging.get_absl_handler().addFilter(_QuietLibraries())
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    logging.info("config:\n%s", config)
    if mode == "train":
        trainer.train_and_evaluate(config, workdir)
    elif mode == "eval":
        logging.info("report written to %s", report.evaluate_checkpoint(config, workdir,
                                                                          _STEP.value))
    elif mode == "predict":
        input_path, output = _required(_INPUT, mode), _required(_OUTPUT, mode)
        restored = inference.restore(config, workdir, _STEP.value)
        count = inference.predict(restored, input_path, output)
        logging.info("%d images translated into %s", count, output)
    else:
        output = _required(_OUTPUT, mode)
        restored = inference.restore(config, workdir, _STEP.value)
        logging.info("generator at step %d exported to %s", restored.step,
                     export.export(restored, output))


if __name__ == "__main__":
    app.run(main)
