"""Test set-up: eight fake CPU devices, so every sharded code path runs on one CPU.

XLA reads the flag when jax first initialises its backend, so it is set before any test
does. Single-device behaviour is tested on a mesh of one of these devices. Programs compile at
XLA's backend optimisation level 0 (`tests/helpers.py: xla_flags`; an XLA_FLAGS that names a
level keeps it). A persistent compilation cache shared with the subprocesses that tests start,
and with the other pytest-xdist worker (the controller sets it before the workers start), saves
recompiling the same tiny programs in every end-to-end run.

The suite runs on both cores (README: `-n 2 --dist loadgroup`). Tests that start several
training processes at once share the xdist group `processes`, so two of them never overlap, and
the longest work is handed out first so that no long test starts last.
"""

import os
import tempfile

from tests.helpers import (  # Sets no XLA flag itself.
    once_per_test_run,
    trained_tiny_config,
    xla_flags,
)

# Once per flag: xdist workers inherit the controller's, and run this module again.
os.environ["XLA_FLAGS"] = " ".join(dict.fromkeys(
    f"{os.environ.get('XLA_FLAGS', '')} {xla_flags(8)}".split()))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="p2p_jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax
import pytest

from configs import tiny

# Where the queue starts: the multi-process group (one unit of several minutes), then every
# test that runs the product as subprocesses or trains end to end, then the rest in file order.
_FIRST_FILES = ("test_multiprocess.py", "test_pix2pixhd.py", "test_faults.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        if item.get_closest_marker("xdist_group"):
            return 0
        if item.get_closest_marker("slow") or item.path.name in _FIRST_FILES:
            return 1
        return 2

    items.sort(key=rank)  # Stable: file order within each rank.


@pytest.fixture
def tiny_config():
    """The tiny config, unlocked values but locked keys, batch 8 to divide 8 devices."""
    config = tiny.get_config()
    config.batch_size = 8
    return config


@pytest.fixture(scope="session")
def devices():
    assert jax.device_count() == 8, "tests expect 8 fake CPU devices (see conftest.py)"
    return jax.devices()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, worker_id):
    """(config, workdir) of `trained_tiny_config()` trained once per test run and shared by
    every test that only reads a trained run (predict, export, serve, the CLI's mistakes).

    Under xdist the workers share the run's temporary folder; the first to arrive trains while
    the other waits on the lock, then finds the finished run. A test that writes into a run
    copies it first."""
    def train(workdir):
        from p2p_jax.train import loop

        loop.train_and_evaluate(trained_tiny_config(), str(workdir))

    workdir = once_per_test_run(tmp_path_factory, worker_id, "trained_tiny", train)
    return trained_tiny_config(), str(workdir)
