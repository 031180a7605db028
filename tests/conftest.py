"""Test set-up: eight fake CPU devices, so every sharded code path runs on one CPU.

XLA reads the flag when jax first initialises its backend, so it is set before any test
imports jax. Single-device behaviour is tested on a mesh of one of these devices. A persistent
compilation cache shared with the subprocesses that tests start saves recompiling the same
tiny programs in every end-to-end run.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="p2p_jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax
import pytest

from configs import tiny


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
