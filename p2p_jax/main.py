"""Command line: `python -m p2p_jax.main --config=configs/default.py [--workdir=DIR] [--mode=...]`,
or `p2p-jax` once installed. --config takes a file or a shipped config's name
(`--config=facades`, `--config=cityscapes_hd:local`).

  --mode=train    (default) train, resuming from the latest checkpoint in DIR
  --mode=eval     the whole `eval.split` through a checkpoint: DIR/eval/<split>_<step>/
                  (metrics.json, index.html, curves.png, contact_sheet.png, images/)
  --mode=predict  translate --input (an image or a folder, any sizes) into --output
  --mode=export   the generator into --output: TF SavedModel, StableHLO, ONNX and a
                  PyTorch state_dict, .pth and .safetensors (`export.formats`), with its
                  config.json and a model card (README.md)
  --mode=serve    a browser demo (Gradio) of the generator at http://--host:--port/
  --mode=import   a PyTorch latest_net_G.pth or .safetensors (--input; --input_d for the D) of the
                  reference or pix2pixHD into DIR as a checkpoint at step 0
  --mode=config   print every key of the config (--config, else DIR/config.json) with its
                  value, its allowed choices and what it is for; nothing runs

--config is needed to train and to import; eval, predict, export and serve read the run's own
(DIR/config.json) when it is left out.

The workdir defaults to workdirs/<config file name>. A mistake (a config key or value, a
path, a file) is one line on stderr and exit status 2; --verbose_errors (or
P2P_JAX_VERBOSE_ERRORS=1) shows its traceback. Flags only; the work happens in `train.loop`,
`eval.report` and `serving`, whose heavy modules are imported after the process is prepared
(see `host`).
"""

from __future__ import annotations

import logging as py_logging
import os
import pathlib
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from p2p_jax import host
from p2p_jax.errors import UserError

MODES = ("train", "eval", "predict", "export", "serve", "import", "config")
# The flags each mode reads beyond --config, --workdir and the multi-process ones.
MODE_FLAGS = {"train": (), "eval": ("step",), "predict": ("step", "input", "output"),
              "export": ("step", "output"), "serve": ("step", "port", "host"),
              "import": ("input", "input_d")}
REQUIRED_FLAGS = {"predict": ("input", "output"), "export": ("output",), "import": ("input",)}
# Modes that need --config; the others read WORKDIR/config.json without it.
CONFIG_MODES = ("train", "import")
EXIT_USER_ERROR = 2
# Packages whose INFO lines are shown (CLU's metric lines and parameter tables, at
# --verbosity=1 with every library's).
OUR_LOGS = ("p2p_jax",)
# Library warnings that say nothing to a user: Orbax on every read-only (eval, predict) open.
_BENIGN_WARNINGS = ("Given directory is read only", "setting save_interval_steps=0",
                    # Orbax logs a failed save from its threads (with tracebacks), then raises
                    # it to the caller, which reports it in one line.
                    "_SignalingThread.run() raised an exception", "Handler Commit operations",
                    "Save Finalize thread", "Future exception was never retrieved")

# Modules of the optional dependencies (pyproject.toml's extras) -> how to install them.
_EXTRAS = {"gradio": "pip install 'p2p_jax[serve]'",
           "tensorflow": "pip install 'p2p_jax[export]'",
           "onnx": "pip install 'p2p_jax[export]'", "onnx_ir": "pip install 'p2p_jax[export]'",
           "onnxruntime": "pip install 'p2p_jax[export]'",
           "jax2onnx": "pip install --no-deps jax2onnx==0.17.1",
           "tensorflow_datasets": "pip install 'p2p_jax[tfds]'",
           "skimage": "pip install 'p2p_jax[photos]'",
           "wandb": "pip install 'p2p_jax[wandb]'"}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (ml_collections).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, summaries and samples go; "
                               "default: workdirs/<config file name>.")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do; see the module docstring.")
_STEP = flags.DEFINE_string("step", None, "Checkpoint step for eval/predict/export/serve: "
                            "a number, or 'best' (the best-scoring one of "
                            "checkpoint.best_metric); default: the latest.")
_INPUT = flags.DEFINE_string("input", None, "predict: an image file or a folder of images; "
                             "import: the generator's state_dict (.pth or .safetensors).")
_INPUT_D = flags.DEFINE_string("input_d", None, "import: the discriminator's state_dict "
                               "(default: a fresh discriminator).")
_OUTPUT = flags.DEFINE_string("output", None, "predict/export: the output folder.")
_PORT = flags.DEFINE_integer("port", 7860, "serve: the port to listen on.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: the address to bind (0.0.0.0: every "
                            "interface; the default is this machine only).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "HOST:PORT of process 0, for multi-process runs outside TPU VM pods and SLURM (which are "
    "detected automatically).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_VERBOSE_ERRORS = flags.DEFINE_bool(
    "verbose_errors", False, "Show the traceback of user errors too (or P2P_JAX_VERBOSE_ERRORS=1).")


class _QuietLibraries(py_logging.Filter):
    """Libraries (JAX, Orbax, Grain, TensorFlow) log routine steps at INFO; keep their
    warnings and errors, and every message of ours. `--verbosity=1` shows them all."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if any(text in record.getMessage() for text in _BENIGN_WARNINGS):
            return logging.get_verbosity() >= 1
        if record.levelno >= py_logging.WARNING or logging.get_verbosity() >= 1:
            return True
        return any(f"{os.sep}{package}{os.sep}" in record.pathname for package in OUR_LOGS)


class _ShortLines(py_logging.Formatter):
    """`12:04:05 message` (and `WARNING: ` or `ERROR: ` before a library's or ours): the time a
    person reads, not absl's date, thread id and source line (`--verbosity=1` keeps those)."""

    def format(self, record: py_logging.LogRecord) -> str:
        level = "" if record.levelno < py_logging.WARNING else f"{record.levelname}: "
        text = f"{self.formatTime(record, '%H:%M:%S')} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _without_closed_loop_reports(hook):
    """sys.unraisablehook minus TensorStore's callbacks into the event loop of an Orbax save
    that failed and closed it (a full disk: hundreds of 'Event loop is closed' tracebacks; the
    failure itself is reported once, by the save)."""
    def unraisablehook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            hook(unraisable)

    return unraisablehook


def _fail(message: str, abandon_threads: bool = False) -> None:
    """The one line a user mistake prints, then exit status 2 (`abandon_threads`: at once,
    see UserError)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    if abandon_threads:
        sys.stdout.flush()
        os._exit(EXIT_USER_ERROR)
    sys.exit(EXIT_USER_ERROR)


def _flag_error_line(error: flags.Error) -> str:
    """A flag error as one line: a config file that raised is reported by its first line and
    the exception it raised (the last line of the traceback ml_collections embeds)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return f"{lines[0].rstrip(':')}: {lines[-1]}"
    return " ".join(lines)


def _with_config_paths(argv: list[str]) -> list[str]:
    """argv with a shipped config's name (`--config=facades[:variant]`) as its file's path."""
    from p2p_jax.config import shipped

    resolved = list(argv)
    for i, argument in enumerate(resolved):
        if argument.startswith("--config="):
            resolved[i] = "--config=" + shipped.resolve(argument.removeprefix("--config="))
        elif argument == "--config" and i + 1 < len(resolved):
            resolved[i + 1] = shipped.resolve(resolved[i + 1])
    return resolved


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with its mistakes (unknown flags, config keys and values, a missing or
    broken config file) as one line instead of a usage dump."""
    try:
        return flags.FLAGS(_with_config_paths(argv))
    except UserError as e:
        _fail(str(e))
    except flags.Error as e:
        _fail(_flag_error_line(e))
    except (AttributeError, KeyError) as e:  # A --config.KEY override of a key not there.
        text = str(e).replace("\\n", " ")
        key = re.search(r"'([^'\\]+)\\?'", text)
        hint = re.search(r"Did you mean [^?]*\?", text)
        _fail(f"--config.*: the config has no key {key.group(1) if key else text!r}"
              + (f"; {hint.group(0)}" if hint else ""))
    return []


def _loaded_config():
    """The config; ml_collections defers a config file that fails to load until first use."""
    config = _CONFIG.value
    try:
        config.keys()
    except OSError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UserError(f"--config={config_flags.get_config_filename(flags.FLAGS['config'])}: "
                        f"{lines[-1]}") from None
    return config


def default_workdir(config_argument: str) -> str:
    """workdirs/<config file stem>[_<variant>] for `--config=configs/cityscapes.py[:pod256]`."""
    path, _, variant = config_argument.partition(":")
    return os.path.join("workdirs", "_".join(filter(None, (pathlib.Path(path).stem, variant))))


def _check_mode_flags(mode: str) -> None:
    for name in ("step", "input", "input_d", "output", "port", "host"):
        if flags.FLAGS[name].present and name not in MODE_FLAGS[mode]:
            users = [m for m, names in MODE_FLAGS.items() if name in names]
            raise UserError(f"--{name} is not used by --mode={mode}; it is for "
                            f"--mode={' or --mode='.join(users)}")
    for name in REQUIRED_FLAGS.get(mode, ()):
        if not flags.FLAGS[name].value:
            raise UserError(f"--mode={mode} needs --{name}")
    _checkpoint_step()  # A bad --step is refused before anything loads.
    if mode == "serve" and not 0 < _PORT.value < 65536:
        raise UserError(f"--port={_PORT.value} must be in 1..65535")
    if _CONFIG.value is None and (mode in CONFIG_MODES or not _WORKDIR.value):
        raise UserError(f"--mode={mode} needs --config=FILE (or a shipped config's name)" + (
            "" if mode in CONFIG_MODES else " or the --workdir of a run (its config.json)"))
    for name in ("workdir", "output"):
        path = flags.FLAGS[name].value
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise UserError(f"--{name}={path} is a file; give a folder (it is created if "
                            "missing)")


def _checkpoint_step() -> int | str | None:
    """--step as the restore takes it: a step, "best", or None (the latest)."""
    value = _STEP.value
    if value is None or value == "best":
        return value
    if not value.isdigit():
        raise UserError(f"--step={value} must be a step number or 'best'")
    return int(value)


def run(config, workdir: str, mode: str) -> None:
    """The chosen mode; imports the heavy modules only now (after `host.prepare_process`)."""
    if config is not None:  # A mistake in the config is one line before JAX or TF is loaded.
        from p2p_jax.config.checks import validate_config

        validate_config(config)
    if mode == "config":  # Before JAX loads: the listing is instant.
        from p2p_jax.config import describe
        from p2p_jax.config.saved import saved_config

        listing = describe.describe(saved_config(workdir) if config is None else config)
        try:
            print(listing, flush=True)
        except BrokenPipeError:  # `| head`: the reader has what it wanted.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    from p2p_jax import parallel

    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config_flag = flags.FLAGS["config"]
    if config is None:
        from p2p_jax.config.saved import saved_config

        config = saved_config(workdir)
        logging.info("config: the run's own, %s", os.path.join(workdir, "config.json"))
    else:
        logging.info("config %s, overrides %s (every value: WORKDIR/config.json; --verbosity=1 "
                     "prints it here)", config_flags.get_config_filename(config_flag),
                     config_flags.get_override_values(config_flag) or "none")
    logging.vlog(1, "config:\n%s", config)
    if mode == "train":
        from p2p_jax.train import loop

        logging.info("workdir: %s", os.path.abspath(workdir))
        loop.train_and_evaluate(config, workdir)
        return
    if mode == "import":
        from p2p_jax.train import model_import

        model_import.import_models(config, workdir, _INPUT.value, _INPUT_D.value)
        return
    from p2p_jax.serving import restore

    if mode == "eval":
        from p2p_jax.eval import report

        trained = restore.restore(config, workdir, _checkpoint_step())
        logging.info("report written to %s", report.evaluate_checkpoint(trained, workdir))
    elif mode == "predict":
        from p2p_jax.serving import predict

        inputs = predict.list_inputs(_INPUT.value, _OUTPUT.value)  # Before loading the model.
        count = predict.predict(restore.restore(config, workdir, _checkpoint_step()), inputs)
        logging.info("%d images translated into %s", count, _OUTPUT.value)
    elif mode == "serve":
        from p2p_jax.serving import app

        app.serve(restore.restore(config, workdir, _checkpoint_step()), _HOST.value, _PORT.value)
    else:
        from p2p_jax.serving import export

        trained = restore.restore(config, workdir, _checkpoint_step(), export.portable_impl(config))
        logging.info("generator at step %d exported to %s", trained.step,
                     export.export(trained, _OUTPUT.value, workdir))


def main(argv: list[str]) -> None:
    verbose = _VERBOSE_ERRORS.value or os.environ.get("P2P_JAX_VERBOSE_ERRORS") == "1"
    try:
        if len(argv) > 1:
            raise UserError(f"unexpected arguments {' '.join(argv[1:])}; flags take the form "
                            "--name=value")
        mode = _MODE.value
        _check_mode_flags(mode)
        host.prepare_process()
        host.use_compilation_cache()
        sys.unraisablehook = _without_closed_loop_reports(sys.unraisablehook)
        logging.get_absl_handler().addFilter(_QuietLibraries())
        if logging.get_verbosity() < 1:
            logging.get_absl_handler().setFormatter(_ShortLines())
        workdir = _WORKDIR.value or default_workdir(
            config_flags.get_config_filename(flags.FLAGS["config"]))
        run(_loaded_config() if _CONFIG.value is not None else None, workdir, mode)
    except UserError as e:
        if verbose:
            raise
        _fail(str(e), e.abandons_threads)
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if verbose or missing not in _EXTRAS:
            raise
        _fail(f"--mode={_MODE.value} needs {missing}, an optional dependency: {_EXTRAS[missing]}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # A path we cannot read or write: permissions, a full disk.
        if verbose or not e.filename:
            raise
        _fail(f"{e.filename}: {e.strerror or e}")
    except Exception as e:
        _exit_if_peer_lost(e)
        raise


def _exit_if_peer_lost(error: Exception) -> None:
    """A collective or barrier that failed because another process is gone: one line, and no
    shutdown barrier (which would wait for the lost process, then abort)."""
    parallel = sys.modules.get("p2p_jax.parallel")
    if parallel is not None and parallel.is_peer_failure(error):
        print(f"error: {parallel.PEER_LOST_HELP} ({' '.join(str(error).split())[:300]})",
              file=sys.stderr, flush=True)
        os._exit(parallel.EXIT_PEER_LOST)


def cli() -> None:
    """The `p2p-jax` console script."""
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    cli()
