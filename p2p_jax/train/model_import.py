"""`--mode=import`: a PyTorch generator (and optionally discriminator) state_dict of the
reference or of pix2pixHD into a workdir, as a checkpoint at step 0 that predict, eval, export,
serve and plain training (fine-tuning) read like any other, with the resolved config beside
it (WORKDIR/config.json).

The architecture is read off the file and checked against the config first; channels the
config leaves to the data (0) are the file's. A discriminator not given is freshly
initialised; optimizer states always are.
"""

from __future__ import annotations

import jax
import ml_collections
from absl import logging
from etils import epath

from p2p_jax import checkpointing, fileio, parallel
from p2p_jax.errors import UserError
from p2p_jax.interop import reference_layout, torch_models
from p2p_jax.models.generation import model_input_channels
from p2p_jax.train import state as train_state

_G_HINT = "check model.generator, model.ngf, model.norm and the channel keys"
_D_HINT = ("check model.discriminator, model.n_layers_d, model.num_d, model.ndf and model.norm "
           "(the discriminator sees the input and output channels together)")


def _with_channels(config: ml_collections.ConfigDict, channels: tuple[int, int | None],
                   path: str) -> ml_collections.ConfigDict:
    """The config with the file's channel counts where it leaves them to the data; a mismatch
    with counts the config fixes is one line naming the key."""
    config = config.copy_and_resolve_references()
    dataset = config.dataset
    file_in, file_out = channels
    if dataset.label_nc:
        dataset.input_channels = 1
        wanted = model_input_channels(dataset)
        if file_in != wanted:
            raise torch_models.ModelFileError(
                f"{path}: the generator takes {file_in} input channels, this config {wanted} "
                f"(dataset.label_nc={dataset.label_nc} one-hot classes"
                f"{' + 1 instance-boundary channel' if dataset.instance_maps else ''}); set "
                "dataset.label_nc / dataset.instance_maps to the model's")
    elif not dataset.input_channels:
        dataset.input_channels = file_in
    elif dataset.input_channels != file_in:
        raise torch_models.ModelFileError(
            f"{path}: the generator takes {file_in} input channels; use "
            f"--config.dataset.input_channels={file_in}")
    if file_out is not None:
        if not dataset.output_channels:
            dataset.output_channels = file_out
        elif dataset.output_channels != file_out:
            raise torch_models.ModelFileError(
                f"{path}: the generator makes {file_out} output channels; use "
                f"--config.dataset.output_channels={file_out}")
    return config


def import_models(config: ml_collections.ConfigDict, workdir: str, generator_file: str,
                  discriminator_file: str | None = None) -> epath.Path:
    """Writes WORKDIR/checkpoints/0 and WORKDIR/config.json; returns the workdir. Nothing is
    written if a file does not fit."""
    existing = checkpointing.checkpoint_dir(workdir)
    if existing.exists() and any(p.name.isdigit() for p in existing.iterdir()):
        raise UserError(f"{workdir} already holds checkpoints; import into a new --workdir")
    tensors = torch_models.read_state_dict(generator_file)
    inferred = torch_models.infer_generator(tensors, generator_file)
    torch_models.check_config(inferred, config, generator_file)
    config = _with_channels(config, inferred["channels"], generator_file)
    d_tensors = (torch_models.read_state_dict(discriminator_file) if discriminator_file
                 else None)
    # The VGG19 weights of the perceptual loss are not part of the state: not needed here.
    building = config.copy_and_resolve_references()
    building.loss.lambda_vgg = 0.0
    setup = train_state.build(building)
    state = setup.state
    g_params, g_stats = torch_models.to_variables(
        tensors, reference_layout.generator_layout(config), jax.device_get(state.g_params),
        jax.device_get(state.g_batch_stats), generator_file, _G_HINT)
    state = state.with_generator(parallel.placed_like(g_params, state.g_params),
                                 parallel.placed_like(g_stats, state.g_batch_stats))
    if d_tensors is not None:
        d_params, d_stats = torch_models.to_variables(
            d_tensors, reference_layout.discriminator_layout(config),
            jax.device_get(state.d_params), jax.device_get(state.d_batch_stats),
            discriminator_file, _D_HINT)
        state = state.replace(d_params=parallel.placed_like(d_params, state.d_params),
                              d_batch_stats=parallel.placed_like(d_stats, state.d_batch_stats))
        logging.info("imported the discriminator from %s", discriminator_file)
    else:
        logging.info("no --input_d: the discriminator is freshly initialised (fine-tuning "
                     "trains it from scratch)")
    out = epath.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    with fileio.workdir_lock(workdir, holder=jax.process_index() == 0):
        if jax.process_index() == 0:  # First: a checkpoint is never there without its config.
            fileio.write_text(out / "config.json", config.to_json_best_effort(indent=2))
        manager = checkpointing.create_manager(workdir, config)
        try:
            checkpointing.save_without_data(manager, 0, state)
        finally:
            manager.close()
    logging.info("imported %s (%s, norm %s, ngf %d, %d -> %d channels) into %s",
                 generator_file, config.model.generator, config.model.norm, config.model.ngf,
                 config.dataset.input_channels, config.dataset.output_channels, out)
    return out
