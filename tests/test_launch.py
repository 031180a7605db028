"""The launch scripts' --dry_run: a pod gets the committed code as an archive (never the
working tree), installs the pinned requirements with the TPU build of jax, and reads and writes
gs:// paths; SLURM jobs run a snapshot of the committed code on the shared file system."""

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(script, *args, env=None):
    return subprocess.run([f"launch/{script}", "--dry_run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def commit():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_pod_gets_an_archive_of_the_commit_and_gs_paths():
    result = launch("tpu_vm_pod.sh", "all", "configs/cityscapes.py", "gs://bucket/run",
                    "--config.dataset.path=gs://bucket/cityscapes")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert "git archive --format=tar.gz --prefix=p2p_jax/" in lines[1]
    assert lines[1].endswith(commit())
    assert "tpu-vm scp" in lines[2] and f"p2p_jax-{commit()}.tar.gz" in lines[2]
    working_tree = re.compile(rf"{re.escape(REPO)}(/|\s|$)")  # Not /tmp/p2p_jax-*.tar.gz.
    assert not any("--recurse" in line or working_tree.search(line) for line in lines)
    install = next(line for line in lines if "pip install" in line)
    assert "-r requirements.txt 'jax[tpu]==0.10.2'" in install
    assert "--no-deps -r requirements-nodeps.txt" in install
    train = next(line for line in lines if "p2p_jax.main" in line)
    assert "--workdir=gs://bucket/run" in train
    assert "--config.dataset.path=gs://bucket/cityscapes" in train
    assert "tpu-vm delete" in lines[-1]


def test_a_pod_clones_a_given_repository_at_the_commit():
    result = launch("tpu_vm_pod.sh", "setup", "configs/cityscapes.py", "gs://b/r",
                    env={"REPO": "https://example.com/p2p_jax.git"})
    assert f"git clone https://example.com/p2p_jax.git p2p_jax && git -C p2p_jax checkout " \
           f"{commit()}" in result.stdout
    assert "git archive" not in result.stdout


def test_a_pod_workdir_must_be_a_bucket():
    result = launch("tpu_vm_pod.sh", "train", "configs/cityscapes.py", "/tmp/run")
    assert result.returncode == 2
    assert "WORKDIR=/tmp/run must be a gs:// path" in result.stderr
    assert "+ " not in result.stdout  # Nothing run.


def test_a_slurm_job_runs_a_snapshot_of_the_commit(tmp_path):
    result = launch("slurm_gpu.sh", "configs/cityscapes.py", str(tmp_path / "run"),
                    "--config.batch_size=16", env={"NODES": "3"})
    assert result.returncode == 0, result.stderr
    code = tmp_path / "run" / "code" / commit()
    assert f"+ git archive {commit()} | tar -x -C {code}" in result.stdout
    assert f"cd {code}\n" in result.stdout and "#SBATCH --nodes=3" in result.stdout
    assert f"--workdir={tmp_path / 'run'} --config.batch_size=16" in result.stdout
    assert not (tmp_path / "run").exists()  # A dry run writes nothing.
