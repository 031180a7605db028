"""Every mistake a user can make on the command line is one line and exit status 2, run as the
user runs it (a subprocess); no traceback, nothing written."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import xla_flags

pytestmark = pytest.mark.slow  # Subprocesses: the product run as users run it.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, cwd=REPO, pythonpath=REPO):
    env = {**os.environ, "PYTHONPATH": pythonpath, "P2P_JAX_HUGEPAGE_MALLOC": "0",
           "XLA_FLAGS": xla_flags(4)}  # tiny.py's batch of 4.
    return subprocess.run([sys.executable, "-m", "p2p_jax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, expected):
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-2000:]
    assert expected in errors[0], errors[0]


@pytest.fixture
def trained_workdir(trained_tiny):
    return trained_tiny[1]


TINY = "--config=configs/tiny.py"
MISTAKES = [
    ([], "--mode=train needs --config=FILE"),
    (["--mode=predict", "--input=x", "--output=y"],
     "config.json does not exist (no run was trained or imported in"),
    (["--config=configs/nope.py"], "No such file or directory: 'configs/nope.py'"),
    (["--config=facadez"],
     "no shipped config 'facadez'; the shipped ones are camvid, cityscapes, "),
    (["--config=configs/facades.py:pod0"], "unknown config variant 'pod0'"),
    ([TINY, "--config.modle.ngf=3"], "no key 'modle'; Did you mean \"model\""),
    ([TINY, "--config.batch_size=abc"], "--config.batch_size=abc: invalid literal"),
    ([TINY, "--config.model.norm=group"], "model.norm='group' is not one of"),
    ([TINY, "--config.dataset.image_size=48"], "dataset.image_size=48 is not a multiple of 32"),
    ([TINY, "--config.batch_size=6"], "batch_size=6 is not divisible by the 4 devices"),
    ([TINY, "--mode=predict"], "--mode=predict needs --input"),
    ([TINY, "--mode=export"], "--mode=export needs --output"),
    ([TINY, "--input=x"], "--input is not used by --mode=train"),
    ([TINY, "--mode=eval", "--output=x"], "--output is not used by --mode=eval"),
    ([TINY, "stray"], "unexpected arguments stray"),
    ([TINY, "--mode=import"], "--mode=import needs --input"),
    ([TINY, "--mode=import", "--input=tests/data/torch_models/unet_none.pth"],
     "unet_none.pth: model.ngf=8 does not match the file (the file has 4); use "
     "--config.model.ngf=4"),
    ([TINY, "--mode=import", "--input=README.md"], "README.md: not a usable PyTorch state_dict"),
    ([TINY, "--mode=serve", "--port=0"], "--port=0 must be in 1..65535"),
    ([TINY, "--mode=serve", "--input=x"], "--input is not used by --mode=serve"),
    ([TINY, "--config.serve.palette=crayons"], "serve.palette='crayons' is not one of"),
    ([TINY, "--config.export.formats=('gif',)"], "export.formats='gif' is not one of"),
    ([TINY, "--config.dataset.source=aligned", "--config.dataset.path=/nonexistent"],
     "dataset folder /nonexistent/train does not exist"),
    (["--config=configs/cityscapes.py"], "dataset.path is empty"),
    ([TINY, "--config.eval.evaluators=('inception',)"], "eval.inception_weights='' not found"),
    ([TINY, "--config.eval.evaluators=('inception',)", "--config.eval.inception_weights=README.md"],
     "README.md: not a usable PyTorch state_dict"),
    ([TINY, "--config.eval.evaluators=('fcn',)", "--config.eval.fcn_model=README.md"],
     "eval.fcn_model='README.md' is not a jax.export artefact"),
]


@pytest.mark.parametrize("args,expected", MISTAKES, ids=[m[1][:40] for m in MISTAKES])
def test_mistake_is_one_line_and_status_2(args, expected, tmp_path):
    workdir = tmp_path / "run"
    assert_one_line_error(run_main(*args, f"--workdir={workdir}"), expected)
    assert not workdir.exists()  # Nothing written.


def test_workdir_mistakes_are_one_line(trained_workdir, tmp_path):
    assert_one_line_error(run_main(TINY, "--workdir=README.md"), "--workdir=README.md is a file")
    assert_one_line_error(run_main(TINY, "--mode=eval", f"--workdir={tmp_path}"),
                          "no checkpoint in")
    assert_one_line_error(run_main(TINY, "--mode=eval", f"--workdir={trained_workdir}",
                                   "--step=99"), "no checkpoint for step 99")
    assert_one_line_error(
        run_main(TINY, "--mode=eval", f"--workdir={trained_workdir}", "--config.model.ngf=16"),
        "holds g_params/down_0/kernel of shape (4, 4, 3, 8), this config one of (4, 4, 3, 16)")
    assert_one_line_error(run_main(TINY, "--mode=predict", f"--workdir={trained_workdir}",
                                   f"--input={tmp_path / 'missing'}", f"--output={tmp_path}"),
                          "is neither an image file nor a folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    (tmp_path / "fake.png").write_text("not an image either")
    assert_one_line_error(run_main(TINY, "--mode=predict", f"--workdir={trained_workdir}",
                                   f"--input={tmp_path / 'fake.png'}",
                                   f"--output={tmp_path / 'out'}"),
                          "none of its 1 image files could be read")
    assert_one_line_error(run_main(TINY, "--mode=export", f"--workdir={trained_workdir}",
                                   f"--output={tmp_path / 'fake.png'}"),
                          "fake.png is a file; give a folder")
    assert_one_line_error(run_main(TINY, "--mode=predict", f"--workdir={trained_workdir}",
                                   f"--input={tmp_path / 'notes'}", f"--output={tmp_path}"),
                          "no images in it")
    photo = tmp_path / "photos" / "x.png"
    photo.parent.mkdir()
    photo.write_bytes(b"kept as it is")  # Not decoded: refused before any model loads.
    for output in (photo.parent, photo.parent / "translated"):
        assert_one_line_error(run_main("--mode=predict", f"--workdir={trained_workdir}",
                                       f"--input={photo.parent}", f"--output={output}"),
                              f"--output={output} is")
    assert photo.read_bytes() == b"kept as it is" and not (photo.parent / "translated").exists()


def test_a_missing_optional_dependency_names_its_extra(trained_workdir, tmp_path):
    """An installation without the `serve` extra: --mode=serve says what to install."""
    fake = tmp_path / "without" / "gradio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'gradio'\", name='gradio')\n")
    result = run_main("--mode=serve", f"--workdir={trained_workdir}",
                      pythonpath=f"{tmp_path / 'without'}{os.pathsep}{REPO}")
    assert_one_line_error(result, "--mode=serve needs gradio, an optional dependency: "
                                  "pip install 'p2p_jax[serve]'")


def test_workdir_defaults_to_workdirs_and_the_config_name(tmp_path):
    result = run_main(f"--config={REPO}/configs/cityscapes.py", cwd=tmp_path)
    assert_one_line_error(result, "dataset.path is empty")
    assert f"workdir: {tmp_path}/workdirs/cityscapes" in result.stderr
    assert not (tmp_path / "workdirs").exists()


def test_the_first_screen_is_short_lines_a_person_reads(tmp_path):
    """Not a terminal (a log file): what runs, where, one line per network, then one short
    line per logged step and per eval; no parameter tables, no absl prefixes. Training and
    eval never import TensorFlow (~4 s a launch): here it cannot be imported."""
    fake = tmp_path / "without" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('training imported tensorflow')\n")
    without_tensorflow = f"{tmp_path / 'without'}{os.pathsep}{REPO}"
    result = run_main(TINY, f"--workdir={tmp_path / 'run'}", pythonpath=without_tensorflow)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = run_main(f"--workdir={tmp_path / 'run'}", "--mode=eval",
                         pythonpath=without_tensorflow)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert max(map(len, lines)) < 200 and not any("+---" in line for line in lines)
    text = "\n".join(lines)
    for expected in (f"workdir: {tmp_path / 'run'}", "4 cpu devices, global batch 4",
                     "generator unet: 261,715 parameters", "discriminator basic: 45,033 parameters",
                     "train step compiled in", "step 2/6 (33%): ", "eval at step 6: l1 "):
        assert expected in text, text
    final = next(line for line in lines if "step 6/6 (100%)" in line)
    assert re.search(r"\d+\.\d img/s, G [\d.]+ \(gan [\d.]+, l1 [\d.]+\), D [\d.]+$", final), final


def test_a_terminal_gets_a_live_bar_with_log_lines_above_it():
    """In a terminal the steps are a progress bar (step, rate, losses) that log lines print
    above instead of through."""
    import fcntl
    import pty
    import struct
    import termios

    script = ("from absl import app, logging\n"
              "from p2p_jax.train.progress import TrainingProgress\n"
              "def main(_):\n"
              "    with TrainingProgress(0, 4, True) as shown:\n"
              "        for step in range(1, 5):\n"
              "            shown.step(step)\n"
              "            shown.logged(step, {'g_loss': 2.5, 'g_l1': 0.5, 'd_loss': 0.7,\n"
              "                                'images_per_sec': 12.0})\n"
              "            logging.info('line %d', step)\n"
              "app.run(main)\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", script], stdin=follower, stdout=follower,
                               stderr=follower, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # The child closed the terminal.
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0
    os.close(leader)
    text = output.decode(errors="replace")
    assert "4/4 [" in text and "12.0 img/s, G 2.5 (l1 0.5), D 0.7" in text, text[-2000:]
    for step in range(1, 5):  # The bar is cleared (\r, spaces, \r) before each log line.
        assert re.search(rf"\r +\r[^\r\n]*line {step}\r?\n", text), text[-2000:]
