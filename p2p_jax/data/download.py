"""Downloads for a networked machine (nothing else in p2p_jax downloads): the reference's pix2pix
datasets and published generators by name, and the weights pix2pixHD's VGG loss and the FID
evaluator read; each ends by printing the command to run next.

  python -m p2p_jax.data.download --dataset=facades        # -> datasets/facades/
  python -m p2p_jax.data.download --model=facades_label2photo   # -> checkpoints/...
  python -m p2p_jax.data.download --weights=vgg19           # -> weights/vgg19-dcbb9e9d.pth

--output changes the folder; --dry_run prints what would be fetched and where; --base_url
fetches from a mirror (any URL urllib opens, file:// included) instead of the original servers.
A file is downloaded beside its destination and checked (archives extracted with tarfile's
`data` filter, weights read by the code-free reader) before it is moved into place: an
interrupted or damaged download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

import tqdm
from absl import app, flags

from p2p_jax.errors import UserError

PIX2PIX = "http://efrosgans.eecs.berkeley.edu/pix2pix"
# name -> (the config that trains on it; for datasets without one of their own, the paper's
# (epochs, batch), turned into steps once the training pairs are counted).
DATASETS = {
    "facades": ("facades", None),
    "maps": ("maps", None),
    "edges2shoes": ("edges2shoes", None),
    "edges2handbags": ("edges2shoes", (15, 4)),
    "night2day": ("maps", (17, 4)),
}
# The reference's published generators (unet_256, batch norm): name -> (config, extra flags).
MODELS = {
    "facades_label2photo": ("facades", ""),
    "sat2map": ("maps", ""),
    "map2sat": ("maps", " --config.dataset.direction=BtoA"),
    "edges2shoes": ("edges2shoes", ""),
    "day2night": ("maps", " --config.dataset.direction=BtoA"),
}
# Weights other networks read: name -> (URL, file name, the config key that takes the file).
WEIGHTS = {
    "vgg19": ("https://download.pytorch.org/models", "vgg19-dcbb9e9d.pth", "loss.vgg_weights"),
    "inception": ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights",
                  "pt_inception-2015-12-05-6726825d.pth", "eval.inception_weights"),
}
CITYSCAPES = """Cityscapes cannot be downloaded without an account (its licence); by hand:
  1. register and log in at https://www.cityscapes-dataset.com/
  2. download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip (Downloads page)
  3. unzip both into one folder, e.g. {output}/cityscapes (gtFine/ and leftImg8bit/ inside)
then train pix2pixHD on the label ids as they come:
  python -m p2p_jax.main --config=cityscapes_hd --config.dataset.path={output}/cityscapes \\
    --config.loss.vgg_weights=weights/vgg19-dcbb9e9d.pth
(python -m p2p_jax.data.download --weights=vgg19 fetches that file), or through TFDS:
configs/cityscapes_tfds.py."""

def _choose(name: str, table: dict, kind: str) -> None:
    if name not in table:
        raise UserError(f"--{kind}={name}: unknown; one of {', '.join(table)}")


def fetch(url: str, target: pathlib.Path) -> None:
    """url into target (a new file), with a progress bar; one line if it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm.tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                           file=sys.stderr) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"could not fetch {url}: {reason}; check the network, or fetch from a "
                        "mirror with --base_url") from None


@contextlib.contextmanager
def _staging(output: pathlib.Path):
    """A scratch folder in the output folder (same file system: the final move is a rename),
    removed whatever happens, with the output folder too if it was made for nothing."""
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=output))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if made and not any(output.iterdir()):
            output.rmdir()


@contextlib.contextmanager
def _named_by(url: str, scratch_file: pathlib.Path):
    """A refused file is named by where it came from, not by its scratch copy."""
    try:
        yield
    except UserError as e:
        raise UserError(str(e).replace(str(scratch_file), url)) from None


def download_dataset(name: str, output: pathlib.Path, base_url: str | None,
                     dry_run: bool) -> str:
    """datasets/NAME/ (train/, val/, ...) from NAME.tar.gz; returns the command to run next."""
    if name == "cityscapes":
        return CITYSCAPES.format(output=output)
    _choose(name, DATASETS, "dataset")
    config, schedule = DATASETS[name]
    url = f"{base_url or PIX2PIX + '/datasets'}/{name}.tar.gz"
    destination = output / name

    def next_command(count: int | None) -> str:
        command = (f"python -m p2p_jax.main --config={config} "
                   f"--config.dataset.path={destination} --workdir=workdirs/{name}")
        if schedule:
            epochs, batch = schedule
            steps = f"{epochs * count // batch}" if count else f"<{epochs} epochs>"
            command += f" --config.batch_size={batch} --config.num_train_steps={steps}"
        return command

    if dry_run:
        return f"would fetch {url} and extract it into {destination}/\nthen: {next_command(None)}"
    if destination.exists():
        count = sum(1 for p in (destination / "train").glob("*") if p.is_file())
        return (f"{destination} is already there (remove it to download again)\n"
                f"{next_command(count)}")
    with _staging(output) as scratch:
        archive = scratch / f"{name}.tar.gz"
        fetch(url, archive)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(scratch / "extracted", filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"{url}: not a usable dataset archive ({e})") from None
        extracted = scratch / "extracted" / name
        if not (extracted / "train").is_dir():
            raise UserError(f"{url}: the archive holds no {name}/train/ folder")
        extracted.rename(destination)
    count = sum(1 for p in (destination / "train").iterdir() if p.is_file())
    return f"{destination}: {count} training pairs\nnext: {next_command(count)}"


def download_model(name: str, output: pathlib.Path, base_url: str | None,
                   dry_run: bool) -> str:
    """checkpoints/NAME_pretrained/latest_net_G.pth (the reference's place for it), checked to
    be a generator state_dict; returns the commands to import and run it."""
    _choose(name, MODELS, "model")
    config, extra = MODELS[name]
    url = f"{base_url or PIX2PIX + '/models-pytorch'}/{name}.pth"
    destination = output / f"{name}_pretrained" / "latest_net_G.pth"
    next_command = (f"python -m p2p_jax.main --config={config}{extra} --mode=import "
                    f"--input={destination} --workdir=workdirs/{name}\n"
                    f"then: python -m p2p_jax.main --workdir=workdirs/{name} --mode=predict "
                    f"--input=YOUR_IMAGES --output=translated")
    if dry_run:
        return f"would fetch {url} into {destination}\nthen: {next_command}"
    if destination.exists():
        return f"{destination} is already there (remove it to download again)\n{next_command}"
    from p2p_jax.interop import torch_models  # Checks the file without running any of it.

    with _staging(output) as scratch:
        fetch(url, scratch / destination.name)
        with _named_by(url, scratch / destination.name):
            torch_models.infer_generator(
                torch_models.read_state_dict(str(scratch / destination.name)), url)
        destination.parent.mkdir(exist_ok=True)
        (scratch / destination.name).rename(destination)
    return f"{destination}: the {name} generator\nnext: {next_command}"


def download_weights(name: str, output: pathlib.Path, base_url: str | None,
                     dry_run: bool) -> str:
    _choose(name, WEIGHTS, "weights")
    folder, file_name, key = WEIGHTS[name]
    url = f"{base_url or folder}/{file_name}"
    destination = output / file_name
    next_command = f"add --config.{key}={destination} to the training command"
    if dry_run:
        return f"would fetch {url} into {destination}\nthen: {next_command}"
    if destination.exists():
        return f"{destination} is already there (remove it to download again)\n{next_command}"
    from p2p_jax.interop import torch_files

    with _staging(output) as scratch:
        fetch(url, scratch / file_name)
        with _named_by(url, scratch / file_name):
            torch_files.load_state_dict(scratch / file_name)
        (scratch / file_name).rename(destination)
    return f"{destination}\nnext: {next_command}"


def define_flags() -> dict[str, flags.FlagHolder]:
    """The command line's flags: defined when run as a program only, so importing this module
    (tests, other programs) leaves absl's flag namespace alone."""
    return {
        "dataset": flags.DEFINE_string("dataset", None, "A pix2pix dataset: "
                                       f"{', '.join([*DATASETS, 'cityscapes'])}."),
        "model": flags.DEFINE_string("model", None,
                                     f"A published pix2pix generator: {', '.join(MODELS)}."),
        "weights": flags.DEFINE_string("weights", None,
                                       f"Network weights: {', '.join(WEIGHTS)}."),
        "output": flags.DEFINE_string("output", None, "Folder to write into (default: "
                                      "datasets/, checkpoints/ or weights/)."),
        "base_url": flags.DEFINE_string("base_url", None,
                                        "Fetch from this folder URL instead."),
        "dry_run": flags.DEFINE_bool("dry_run", False,
                                     "Print what would be fetched; write nothing."),
    }


def main(argv: list[str], options: dict[str, flags.FlagHolder]) -> None:
    chosen = [(kind, options[kind].value) for kind in ("dataset", "model", "weights")
              if options[kind].value]
    try:
        if len(argv) > 1 or len(chosen) != 1:
            raise UserError("give one of --dataset=NAME, --model=NAME or --weights=NAME "
                            "(--helpfull lists the names)")
        kind, name = chosen[0]
        default = {"dataset": "datasets", "model": "checkpoints", "weights": "weights"}[kind]
        output = pathlib.Path(options["output"].value or default)
        download = {"dataset": download_dataset, "model": download_model,
                    "weights": download_weights}[kind]
        print(download(name, output, options["base_url"].value, options["dry_run"].value),
              flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; nothing was kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    defined = define_flags()
    app.run(lambda argv: main(argv, defined))
