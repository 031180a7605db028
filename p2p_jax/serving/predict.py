"""`--mode=predict`: translate image files of any size with a restored generator."""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
import tqdm
from absl import logging

from p2p_jax import fileio
from p2p_jax.data import images
from p2p_jax.errors import MissingFileError, UserError
from p2p_jax.models.generation import GeneratorVariables, TrainedGenerator, host_key
from p2p_jax.models.translate import Translator


@dataclasses.dataclass(frozen=True)
class InputFiles:
    """The images a predict run translates (`root`/each of `names`, listed from `given`, the
    --input) and where they go."""
    given: str
    root: str
    names: list[str]
    output_dir: str


def _resolved(path: str) -> str:
    return path.rstrip("/") if fileio.is_remote(path) else os.path.realpath(path)


def _check_output_apart(input_path: str, root: str, output_dir: str, folder: bool) -> None:
    """Outputs keep their input's relative name, so an --output that is the input's folder
    would write over the inputs, and one inside an --input folder would be read back as
    input by the next run."""
    out, source = _resolved(output_dir), _resolved(root)
    inside = folder and out.startswith(source.rstrip("/") + "/")
    if out == source or inside:
        harm = ("read its outputs back as inputs next time" if inside
                else "write over the input images")
        raise UserError(f"--output={output_dir} {'is inside' if inside else 'is'} the folder of "
                        f"--input={input_path}: predict would {harm}; choose an --output "
                        "outside it")


def list_inputs(input_path: str, output_dir: str) -> InputFiles:
    """The images at `input_path` (a file, or a folder searched recursively; local or gs://),
    listed once, and checked before any model is loaded: they exist, and `output_dir` is
    apart from them."""
    folder = fileio.is_dir(input_path)
    if fileio.is_file(input_path):
        root, names = os.path.dirname(input_path) or ".", [os.path.basename(input_path)]
    elif folder:
        start = time.perf_counter()
        root, names = input_path, fileio.walk_files(input_path, images.IMAGE_EXTENSIONS)
        if not names:
            raise UserError(f"--input={input_path}: no images in it (looked for "
                            f"{', '.join(images.IMAGE_EXTENSIONS)})")
        logging.info("--input=%s: %d images, listed in %.2f s", input_path, len(names),
                     time.perf_counter() - start)
    else:
        raise MissingFileError(f"--input={input_path} is neither an image file nor a folder")
    _check_output_apart(input_path, root, output_dir, folder)
    return InputFiles(input_path, root, names, output_dir)


def read_input(path: str, dataset) -> dict[str, np.ndarray]:
    """One input file as the generator reads it: an image converted to the trained channels,
    or (label_nc > 0) a label map of class ids, with a zero boundary map if the model takes
    one."""
    if not dataset.label_nc:
        return {"A": input_image(images.read(path, dataset.max_image_pixels), path, dataset)}
    try:
        data = fileio.read_bytes(path)
    except Exception as e:  # OSError locally; TensorFlow's gfile errors for gs://.
        raise images.BadImageError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    return label_example(images.decode_map(data, path, dataset.max_image_pixels), path, dataset)


def input_image(image: np.ndarray, name: str, dataset) -> np.ndarray:
    """A decoded image in the trained input's channels and pixel type."""
    image = images.to_channels(image, dataset.input_channels, name)
    return images.convert(image, dataset.input_dtype or "uint8", name)


def output_name(name: str, output: np.ndarray) -> str:
    """`name` with an extension whose format holds `output` without loss: the input's own
    where it can (a photo's JPEG stays JPEG), else 16-bit PNG or TIFF."""
    stem, extension = os.path.splitext(name)
    chosen = images.lossless_extension(extension or ".png", output)
    if chosen != extension:
        logging.log_first_n(logging.INFO, "outputs are %d-channel %s: written as %s (e.g. %s)",
                            1, output.shape[2], output.dtype, chosen, stem + chosen)
    return stem + chosen


def label_example(ids: np.ndarray, name: str, dataset) -> dict[str, np.ndarray]:
    """Class ids (H, W) or (H, W, 1) as a label-map model reads them, with a zero boundary
    map if it takes one."""
    ids = ids.reshape(ids.shape[:2])
    if ids.max(initial=0) >= dataset.label_nc:
        raise images.BadImageError(f"{name}: class ids up to {ids.max()}, but the model knows "
                                   f"dataset.label_nc={dataset.label_nc} classes")
    example = {"A": ids.astype(np.uint8)[:, :, None]}
    if dataset.instance_maps:
        example["E"] = np.zeros_like(example["A"])
    return example


def translate_example(translator: Translator, variables: GeneratorVariables,
                      example: dict[str, np.ndarray], key: np.ndarray, index: int,
                      config) -> np.ndarray:
    """One input translated as file `index` of a predict run: whole, or in tiles when it has
    more than eval.tile_pixels (tile t draws from fold_in(fold_in(key, index), t))."""
    height, width = example["A"].shape[:2]
    if height * width > config.eval.tile_pixels:
        return translator.generate_tiled(
            variables, example if "E" in example else example["A"],
            np.asarray(jax.random.fold_in(key, index)), config.eval.tile_pixels,
            config.eval.tile_overlap)
    return translator.generate(variables, [example], key, [index], batch_size=1)[0][0]


def predict(trained: TrainedGenerator, inputs: InputFiles, files_per_chunk: int = 64) -> int:
    """Translates every image of `inputs` (see `list_inputs`) to `inputs.output_dir/<same
    relative name>` in the targets' pixel type (`output_name`), any sizes, batched by size;
    unreadable files (and images over `dataset.max_image_pixels`) are reported and skipped,
    and images over `eval.tile_pixels` are translated in overlapping tiles. File i (in sorted
    order) draws its dropout from fold_in(PRNGKey(seed), i), as image i of an exported
    model's batch. Returns the number of images written."""
    root, names, output_dir = inputs.root, inputs.names, inputs.output_dir
    config, variables = trained.config, trained.variables
    translator = Translator.for_config(trained.generator, trained.mesh, config)
    if config.dataset.instance_maps:
        logging.warning("predict reads label maps alone: the instance-boundary channel is "
                        "zero (evaluation reads the dataset's instance maps)")
    key = host_key(config.seed)
    written = 0
    with tqdm.tqdm(total=len(names), unit="img", disable=jax.process_index() != 0) as bar:
        for start in range(0, len(names), files_per_chunk):
            whole, tiled = [], []  # (index, name, example)
            for index in range(start, min(start + files_per_chunk, len(names))):
                try:
                    example = read_input(os.path.join(root, names[index]), config.dataset)
                except images.BadImageError as e:
                    logging.warning("skipped: %s", e)
                    continue
                height, width = example["A"].shape[:2]
                large = height * width > config.eval.tile_pixels
                (tiled if large else whole).append((index, names[index], example))
            outputs = translator.generate(
                variables, [example for _, _, example in whole], key,
                [index for index, _, _ in whole])[0] if whole else []
            results = [(name, out) for (_, name, _), out in zip(whole, outputs, strict=True)]
            for index, name, example in tiled:
                height, width = example["A"].shape[:2]
                logging.info("%s: %dx%d, over eval.tile_pixels=%d: translated in tiles", name,
                             width, height, config.eval.tile_pixels)
                results.append((name, translate_example(translator, variables, example, key,
                                                        index, config)))
            if jax.process_index() == 0:
                for name, output in results:
                    images.write(os.path.join(output_dir, output_name(name, output)), output)
            written += len(results)
            bar.update(min(files_per_chunk, len(names) - start))
    if not written:
        raise UserError(f"--input={inputs.given}: none of its {len(names)} image files could "
                        "be read; see the warnings above")
    return written
