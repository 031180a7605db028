"""The model card (README.md) an export carries, so a shared model says what it is: the
architecture, how and on what it was trained, how well it does (the latest eval of the
exported step: an `--mode=eval` report, else the periodic eval of training) with its contact
sheet, how to run it, and what it is for. Hugging Face reads the front matter."""

from __future__ import annotations

import json
import math

from clu import parameter_overview
from etils import epath

from p2p_jax import checkpointing, fileio
from p2p_jax.config.sizes import image_hw
from p2p_jax.models.generation import TrainedGenerator


def _weights(model) -> str:
    if model.ema_decay:
        return (f"the exponential moving average of the trained weights (decay "
                f"{model.ema_decay:g}), as training's samples and evaluations used")
    return "the trained weights"


def _latest_eval(workdir: epath.Path, step: int) -> tuple[dict | None, epath.Path | None, str]:
    """(metrics, contact sheet, where they come from) of the latest eval at or before `step`:
    a `--mode=eval` report of this very step first, then training's periodic evals."""
    reports = sorted(workdir.glob(f"eval/*_{step:08d}/metrics.json"))
    if reports:
        record = json.loads(reports[-1].read_text())
        sheet = reports[-1].parent / "contact_sheet.png"
        split = reports[-1].parent.name.rsplit("_", 1)[0]
        return (record["metrics"], sheet if sheet.exists() else None,
                f"`--mode=eval` on the whole `{split}` split ({record['num_examples']} images) "
                f"at step {step}")
    periodic = workdir / checkpointing.PERIODIC_EVALS
    history = json.loads(periodic.read_text()) if periodic.exists() else []
    earlier = [r for r in history if r["step"] <= step]
    if not earlier:
        return None, None, ""
    record = earlier[-1]
    sheet = workdir / "samples" / f"step_{record['step']:08d}.png"
    return (record["metrics"], sheet if sheet.exists() else None,
            f"training's periodic eval on {record['num_examples']} held-out images at step "
            f"{record['step']}")


def _data(config) -> str:
    dataset = config.dataset
    where = dataset.path or dataset.tfds_name
    where = f"`{dataset.source}` data from `{where}`" if where else "the embedded synthetic scenes"
    task = "" if dataset.task == "paired" else f", derived task `{dataset.task}`"
    if dataset.label_nc:
        inputs = f"label maps of {dataset.label_nc} classes"
        inputs += " with instance boundaries" if dataset.instance_maps else ""
    else:
        inputs = f"{dataset.input_channels}-channel images"
    return (f"{where}{task} ({dataset.direction}): {inputs} -> "
            f"{dataset.output_channels}-channel images")


def write(trained: TrainedGenerator, workdir: str, output: epath.Path, written: list[str],
          torch_definition: dict | None) -> None:
    """OUT/README.md, and OUT/contact_sheet.png when an eval drew one; `torch_definition`:
    the PyTorch call generator.safetensors loads into, when it was written."""
    config, step = trained.config, trained.step
    model, loss = config.model, config.loss
    running = trained.generator.eval_mode
    height, width = image_hw(config.dataset.image_size)
    metrics, sheet, source = _latest_eval(epath.Path(workdir), step)
    parameters = parameter_overview.count_parameters(trained.variables.params)
    if sheet is not None:
        fileio.write_bytes(output / "contact_sheet.png", sheet.read_bytes())
    losses = [f"GAN ({loss.gan_mode})", f"L1 x{loss.lambda_l1:g}"]
    losses += [f"feature matching x{loss.lambda_feat:g}"] if loss.lambda_feat else []
    losses += [f"VGG x{loss.lambda_vgg:g}"] if loss.lambda_vgg else []
    lines = [
        "---", "library_name: p2p_jax", "pipeline_tag: image-to-image",
        "tags: [pix2pix, image-to-image, gan, jax]", "---", "",
        f"# {model.generator} generator, {height}x{width}, step {step}", "",
        "A conditional GAN generator (Pix2Pix / pix2pixHD) trained with p2p_jax, a JAX "
        "trainer.", "",
        "## Model", "",
        f"- Generator `{model.generator}` ({parameters:,} parameters), ngf "
        f"{model.ngf}, norm `{model.norm}`, dropout {model.dropout:g}; trained at "
        f"{height}x{width}.",
        f"- Test-time normalisation: {'running' if running else 'per-image'}"
        f" statistics{', dropout on' if not running and model.dropout else ''}.",
        *([("- Output: the input plus the network's output, clipped to [-1, 1] "
            "(`model.residual`; in PyTorch: `(x + net(x)).clamp(-1, 1)`).")]
          if model.residual else []),
        *([(f"- Output: the input's lightness coloured by the network's two chroma channels "
            f"(`model.chroma={model.chroma}`; `p2p_jax/models/color.py`).")]
          if model.chroma != "none" else []),
        f"- Weights: {_weights(model)}.",
        f"- Data: {_data(config)}.",
        f"- Training: {step} of {config.num_train_steps} steps at batch {config.batch_size}; "
        f"losses {', '.join(losses)}; Adam lr {config.optimizer.learning_rate:g} "
        f"({config.optimizer.schedule} schedule). Every setting: `config.json`.", "",
        "## Evaluation", "",
    ]
    if metrics:
        lines += [f"From {source}:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items())
                  if not (isinstance(value, float) and math.isnan(value))]
        if sheet is not None:
            lines += ["", "![input, output and target of held-out images](contact_sheet.png)"]
    else:
        lines += [f"No eval of this step was recorded: `p2p-jax --workdir={workdir} --mode=eval "
                  f"--step={step}`, then export again."]
    lines += [
        "", "## Use", "",
        "Files here: " + ", ".join(f"`{name}`" for name in written) + ".", "",
        f"- With p2p_jax, from its workdir: `p2p-jax --workdir={workdir} --mode=predict "
        "--input=photos/ --output=out/`.",
    ]
    if torch_definition is not None:
        definition = torch_definition
        lines += [
            f"- In PyTorch, with [{definition['repository']}](https://github.com/"
            f"{definition['repository']})'s `models/networks.py`:", "", "```python",
            definition["python"],
            "from safetensors.torch import load_file",
            "net.load_state_dict(load_file('generator.safetensors'))", "```", "",
            "  Inputs and outputs are in [-1, 1], NCHW.",
        ]
    dataset = config.dataset
    if "generator.onnx" in written:
        lines += ["- ONNX Runtime: `InferenceSession('generator.onnx').run(None, "
                  f"{{'images': {dataset.input_dtype or 'uint8'}_nhwc}})`."]
    if (dataset.input_dtype, dataset.output_dtype) != ("uint8", "uint8") or any(
            dataset.normalize[f"{side}_low"] not in ((), (0.0,)) for side in ("input", "output")):
        lines += [
            f"- Pixel values: inputs {dataset.input_channels}-channel {dataset.input_dtype}, "
            f"outputs {dataset.output_channels}-channel {dataset.output_dtype}; the networks "
            "see each channel's low..high as -1..1 (inputs "
            f"{_range(dataset.normalize, 'input')}, outputs "
            f"{_range(dataset.normalize, 'output')}, `dataset.normalize` in config.json), and "
            "the SavedModel, StableHLO and ONNX exports apply that mapping both ways "
            "(generator.pth takes and returns the -1..1 values)."]
    lines += [
        "", "## Intended use and limits", "",
        "Translating inputs like its training data, at about its training size (larger "
        "images are tiled). Outputs are plausible images, not measurements: do not use them "
        "where the pixel values must be true (medicine, science, evidence) without your own "
        "validation. Trained on the data above only; it inherits that data's biases.", "",
    ]
    fileio.write_text(output / "README.md", "\n".join(lines))


def _range(normalize, side: str) -> str:
    low, high = normalize[f"{side}_low"], normalize[f"{side}_high"]
    return ", ".join(f"{lo:.6g}..{hi:.6g}" for lo, hi in zip(low, high, strict=True))
