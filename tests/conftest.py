"""Test set-up: eight fake CPU devices, so every sharded code path runs on one CPU.

XLA reads the flag when jax first initialises its backend, so it is set before any test
imports jax. Single-device behaviour is tested on a mesh of one of these devices.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
