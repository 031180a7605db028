"""Fault tolerance: non-finite steps, SIGTERM, SIGKILL at random times, damaged checkpoints.

They train on one device: what they check does not depend on sharding, which tests of its own
cover (test_parallel, test_train, test_multiprocess), and one device trains the tiny model in
about 60% of the time of eight.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax import checkpointing, fileio, parallel, preemption
from p2p_jax.data import pipeline
from p2p_jax.errors import UserError
from p2p_jax.train import faults
from p2p_jax.train import loop as trainer
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step
from tests.helpers import fixed_schedule, xla_flags


@pytest.mark.slow
def test_nonfinite_step_is_skipped_and_counted(tiny_config, devices):
    tiny_config.optimizer.schedule = "cosine"  # A rate that moves at every applied step.
    tiny_config.optimizer.decay_steps = 10
    setup = train_state.build(tiny_config, devices=devices[:1])
    mesh, recipe, state = setup.mesh, setup.recipe, setup.state
    it = pipeline.create_train_iterator(tiny_config, 0, 1)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state)
    step_fn = None
    history = []
    for step in (1, 2, 3):  # Step 2 gets NaN inputs, as debug.nonfinite_steps=(2,) does.
        batch = parallel.global_batch(next(it), mesh)
        step_fn = step_fn or faults.with_nonfinite_steps(
            train_step.compile_train_step(recipe, shapes, batch, mesh), (2,),
            lambda bad: train_step.compile_train_step(recipe, shapes, bad, mesh))
        before = jax.device_get(state.g_params)
        state, metrics = step_fn(state, batch, step)
        history.append((before, jax.device_get(state), jax.device_get(metrics)))
    (_, after1, m1), (before2, after2, m2), (_, after3, m3) = history
    assert np.isfinite(m1["g_loss"]) and not np.isfinite(m2["g_loss"])
    jax.tree.map(np.testing.assert_array_equal, before2, after2.g_params)  # Update dropped.
    jax.tree.map(np.testing.assert_array_equal, after1.g_opt_state, after2.g_opt_state)
    assert (int(m2["skipped_steps"]), int(m2["nonfinite_streak"])) == (1, 1)
    assert (int(m3["skipped_steps"]), int(m3["nonfinite_streak"])) == (1, 0)
    assert int(after2.step) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(after3.g_params))
    # The logged rate is the one Adam applied: the dropped step 2 does not advance it.
    schedule = recipe.schedule
    assert [float(m["learning_rate"]) for m in (m1, m2, m3)] == pytest.approx(
        [float(schedule(0)), float(schedule(1)), float(schedule(1))])
    assert float(schedule(1)) != pytest.approx(float(schedule(2)))


@pytest.mark.slow
def test_too_many_nonfinite_steps_stop_with_last_good_checkpoint(tiny_config, tmp_path, devices):
    tiny_config.debug.nonfinite_steps = (4, 5, 6)
    tiny_config.nan_patience = 2
    tiny_config.log_every_steps = 1
    with pytest.raises(trainer.NonFiniteError,
                       match=r"2 consecutive non-finite steps up to step 5.*last good "
                             r"checkpoint: step 3"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path), devices[:1])
    assert os.path.isdir(tmp_path / "checkpoints" / "3")


@pytest.mark.slow
def test_nonfinite_run_between_log_steps_still_stops_training(tiny_config, tmp_path, devices):
    """Three bad steps that recover before the log step (log_every_steps > nan_patience): the
    window's longest streak counts, not its last value."""
    tiny_config.debug.nonfinite_steps = (3, 4, 5)
    tiny_config.nan_patience = 2
    tiny_config.log_every_steps = 10
    tiny_config.num_train_steps = 12
    tiny_config.checkpoint_every_steps = 100
    with pytest.raises(trainer.NonFiniteError, match=r"3 consecutive non-finite steps up to "
                                                     r"step 10"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path), devices[:1])


def run_main(workdir, *overrides, wait=True):
    """Runs the trainer CLI; returns its output, or the running process with wait=False."""
    command = [sys.executable, "-m", "p2p_jax.main", "--config=configs/tiny.py",
               f"--workdir={workdir}", "--config.batch_size=8", *overrides]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "XLA_FLAGS": xla_flags(1)})
    if not wait:
        return proc
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    return output


LONG_RUN = {"num_train_steps": 40, "optimizer.constant_steps": 20, "optimizer.decay_steps": 20,
            "sample_every_steps": 1000, "eval_every_steps": 1000, "log_every_steps": 10,
            "checkpoint_every_steps": 4, "checkpoint.max_to_keep": 2}
LONG_RUN_FLAGS = [f"--config.{k}={v}" for k, v in LONG_RUN.items()]


def wait_for_checkpoint(workdir, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        folder = os.path.join(workdir, "checkpoints")
        if os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder)):
            return
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_at_random_times_then_resume_is_bit_exact(tmp_path):
    # A process of its own, as the killed runs: XLA's CPU client with one device and with
    # eight (one of them used) may order a reduction differently.
    run_main(tmp_path / "straight", *LONG_RUN_FLAGS)
    expected = checkpointing.load_train_state(str(tmp_path / "straight"))
    assert int(expected["step"]) == 40
    rng = random.Random(0)
    for trial in range(2):
        workdir = str(tmp_path / f"killed_{trial}")
        proc = run_main(workdir, *LONG_RUN_FLAGS, wait=False)
        wait_for_checkpoint(workdir, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert int(checkpointing.load_train_state(workdir)["step"]) < 40, "killed too late"
        assert "resumed from checkpoint at step" in run_main(workdir, *LONG_RUN_FLAGS)
        jax.tree.map(np.testing.assert_array_equal, checkpointing.load_train_state(workdir),
                     expected)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
    workdir = str(tmp_path)
    proc = run_main(workdir, "--config.num_train_steps=100000", "--config.log_every_steps=50",
                    "--config.sample_every_steps=100000", "--config.eval_every_steps=100000",
                    "--config.checkpoint_every_steps=100000", wait=False)
    for line in proc.stdout:
        if "train step compiled" in line:
            break
    time.sleep(1.0)
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-3000:]
    assert time.time() - start < 60
    assert "preempted: checkpoint at step" in output
    step = int(checkpointing.load_train_state(workdir)["step"])
    assert 0 < step < 100000


def test_ctrl_c_saves_like_sigterm_and_twice_stops_at_once():
    """One process: the first SIGINT asks for the save after the current step, as SIGTERM
    does; a second one interrupts at once. The handlers before the run come back after it."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    watcher = preemption.PreemptionWatcher(manager=None)  # One process: no manager asked.
    try:
        assert not watcher.reached(1)
        os.kill(os.getpid(), signal.SIGINT)
        assert watcher.reached(2)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # The handler raises at the next bytecode.
    finally:
        watcher.close()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def damage(checkpoint_folder, item="state"):
    """Truncates every file of an item (the saved arrays by default), as a half-copied or
    corrupted disk would."""
    for root, _, files in os.walk(os.path.join(checkpoint_folder, item)):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(7)


@pytest.mark.slow
def test_damaged_latest_checkpoint_falls_back_to_previous(tiny_config, tmp_path, devices):
    workdir, straight = str(tmp_path / "run"), str(tmp_path / "straight")
    one = devices[:1]
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 6), workdir, one)
    damage(os.path.join(workdir, "checkpoints", "6"))
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), workdir, one)
    assert os.path.isdir(os.path.join(workdir, "checkpoints_unreadable", "6"))
    # Step 6, saved again by that run, damaged again: set aside beside the first copy.
    for step in ("6", "8"):
        damage(os.path.join(workdir, "checkpoints", step))
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), workdir, one)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints_unreadable"))) == [
        "6", "6.2", "8"]
    # Only the data position of step 8 damaged: the weights are kept, the stream repositioned.
    damage(os.path.join(workdir, "checkpoints", "8"), "data")
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 10), workdir, one)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "8", "9"]
    assert len(os.listdir(os.path.join(workdir, "checkpoints_unreadable"))) == 3
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 10), straight, one)
    jax.tree.map(np.testing.assert_array_equal, checkpointing.load_train_state(workdir),
                 checkpointing.load_train_state(straight))


def test_checksums_are_numpys_on_any_sharding(devices):
    """The saved checksums: the sum of each array's words times odd position weights, mod
    2**32 (NumPy below), the same whether the array sits on one device or is split over 8,
    and changed by any single altered element."""
    rng = np.random.default_rng(0)
    tree = {"kernel": rng.normal(size=(8, 3, 5)).astype(np.float32),
            "ids": rng.integers(-9, 9, (7,), dtype=np.int32),
            "half": rng.normal(size=(2, 3)).astype(jnp.bfloat16), "step": np.int32(5)}

    def numpy_checksum(x):
        words = np.asarray(x).view(np.uint16 if x.dtype.itemsize == 2 else np.uint32)
        weights = np.arange(words.size, dtype=np.uint64) * 2 + 1
        return int(np.sum(words.ravel().astype(np.uint64) * weights % 2**32) % 2**32)

    expected = {name: numpy_checksum(value) for name, value in tree.items()}
    assert checkpointing.checksums(jax.device_put(tree, devices[0])) == expected
    mesh = jax.sharding.Mesh(np.asarray(devices), ("x",))
    split = jax.device_put(tree["kernel"], jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("x")))
    assert checkpointing.checksums({**tree, "kernel": split}) == expected
    tree["kernel"][3, 1, 2] = np.nextafter(tree["kernel"][3, 1, 2], np.inf)
    assert checkpointing.checksums(tree)["kernel"] != expected["kernel"]


def alter(checkpoint_folder):
    """Flips 64 bytes in the middle of the largest array file: chunks that may still decode,
    to other values (a silent disk or copy error)."""
    files = [os.path.join(root, name)
             for root, _, names in os.walk(os.path.join(checkpoint_folder, "state"))
             for name in names]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.seek(os.path.getsize(largest) // 2)
        data = f.read(64)
        f.seek(-len(data), os.SEEK_CUR)
        f.write(bytes(b ^ 0x5A for b in data))


@pytest.mark.slow
def test_no_restorable_checkpoint_is_a_clear_error(tiny_config, tmp_path, devices):
    """Bytes changed inside an array file are caught by the checksums saved with the
    checkpoint: reading it is one error naming the step and the others to pick. With every
    checkpoint altered or damaged, training stops with that error and moves nothing (it
    trained on altered weights before)."""
    trainer.train_and_evaluate(tiny_config, str(tmp_path), devices[:1])
    alter(os.path.join(tmp_path, "checkpoints", "6"))
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"step 6: .* does not match the checksum saved with it.* pick "
                             r"another with --step \(available: \[3\]\)") as error:
        checkpointing.load_train_state(str(tmp_path))
    assert "\n" not in str(error.value)
    assert int(checkpointing.load_train_state(str(tmp_path), 3)["step"]) == 3
    damage(os.path.join(tmp_path, "checkpoints", "3"))
    with pytest.raises(checkpointing.CheckpointError,
                       match="no checkpoint in .* can be restored .newest, step 6: .*checksum"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path), devices[:1])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]  # Nothing moved.
    shutil.rmtree(tmp_path)


@pytest.mark.slow
def test_one_run_per_workdir_and_a_refused_resume_keeps_the_config(tiny_config, tmp_path,
                                                                     devices):
    """A second run on a workdir in use is refused, naming the holder, before it writes
    anything; once the holder is killed (the OS drops its lock), a run proceeds. A resume
    refused because the checkpoint does not fit leaves config.json describing the checkpoint,
    not the refused config."""
    workdir, config_file = str(tmp_path / "run"), tmp_path / "run" / "config.json"
    lock_file = config_file.with_name(fileio.LOCK_FILE)
    tiny_config.num_train_steps = 3
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from p2p_jax import fileio\n"
                               f"with fileio.workdir_lock({workdir!r}): sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (lock_file.exists() and "pid" in lock_file.read_text()):
            assert time.time() < deadline and holder.poll() is None
            time.sleep(0.05)
        with pytest.raises(UserError, match=fr"is in use by another run \(pid {holder.pid} on "):
            trainer.train_and_evaluate(tiny_config, workdir, devices[:1])
        assert sorted(os.listdir(workdir)) == [fileio.LOCK_FILE]
    finally:
        holder.kill()  # SIGKILL: nothing but the OS releases the lock.
        holder.wait()
    trainer.train_and_evaluate(tiny_config, workdir, devices[:1])
    saved = config_file.read_text()
    wider = tiny_config.copy_and_resolve_references()
    wider.model.ngf = 16
    with pytest.raises(checkpointing.CheckpointError, match="holds g_params/down_0/kernel"):
        trainer.train_and_evaluate(wider, workdir, devices[:1])
    assert config_file.read_text() == saved


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs), to be filled."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"a full disk is made by mounting a small tmpfs, which needs root "
                    f"({mounted.stderr.strip()})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk, leave_bytes):
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(bytes(max(free - leave_bytes, 0)))


@pytest.mark.slow
def test_a_full_disk_is_one_line_leaves_no_litter_and_keeps_the_last_checkpoint(
        tiny_config, small_disk, devices):
    workdir = small_disk / "run"
    tiny_config.num_train_steps = 3
    trainer.train_and_evaluate(tiny_config, str(workdir), devices[:1])
    fill(small_disk, 100_000)

    # Samples and evaluation at step 6 still fit; the checkpoint does not.
    proc = run_main(workdir, "--config.num_train_steps=6", wait=False)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, output[-3000:]
    error = output.strip().splitlines()[-1]
    assert error.startswith("error: checkpoint save at step 6 under ") and (
        "(no space left on device)" in error and "steps [3]" in error), error
    assert "Traceback" not in output, output[-3000:]
    assert not [p for p in workdir.rglob("*") if "tmp" in p.name], "unfinished files left"
    assert int(checkpointing.load_train_state(str(workdir))["step"]) == 3

    # Any other file: its write names it and leaves no staging file.
    with pytest.raises(OSError) as raised:
        fileio.write_bytes(workdir / "samples" / "big.png", bytes(1_000_000))
    assert raised.value.filename == str(workdir / "samples" / "big.png")
    assert not list((workdir / "samples").glob("*.tmp"))
