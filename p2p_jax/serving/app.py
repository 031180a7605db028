"""`--mode=serve`: a Gradio app over a restored generator. Paint a label map (or edges) on a
canvas, or drop a photo, and see it translated at its own size; the same server answers
`gradio_client.Client(url).predict(handle_file(path), api_name="/translate")`.

Each request is decoded and translated exactly as `--mode=predict` translates a single file
(same decoder and pixel limit, padding and crop-back, tiles over `eval.tile_pixels`, the
dropout of file 0), so an output equals predict's on the same file. The generator is compiled
once before the server opens (warm-up); requests queue, `serve.concurrency` at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import tempfile
import time

import gradio as gr
import ml_collections
import numpy as np
from absl import logging

from p2p_jax import fileio
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import cityscapes, images, pipeline, values
from p2p_jax.errors import UserError
from p2p_jax.models.generation import TrainedGenerator, host_key
from p2p_jax.models.translate import Translator
from p2p_jax.serving import palettes, predict

# Outputs of small models (64x64) shown at the canvas's size, pixels kept square.
CSS = "#output img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


class Requests:
    """A request's image of any size -> the uint8 output, as predict makes it for file 0."""

    def __init__(self, trained: TrainedGenerator):
        self._trained = trained
        self._config = trained.config
        self._translator = Translator.for_config(trained.generator, trained.mesh, trained.config)
        self._key = host_key(self._config.seed)
        dataset = self._config.dataset
        self._output_map = values.side_map(dataset, "output")
        self._chosen = tuple(self._config.eval.preview_channels)
        # 8-bit gray or RGB outputs, shown as they are, are their own download; others are
        # shown as previews and offered at full precision beside them.
        self.photo_outputs = (self._output_map == values.UINT8
                              and dataset.output_channels in (1, 3)
                              and values.preview_channels(dataset.output_channels,
                                                          self._chosen) in ((0,), (0, 1, 2)))

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self._config

    def preview(self, output: np.ndarray) -> np.ndarray:
        """An output as the page shows it (`values.preview`)."""
        return values.preview(output, self._output_map, self._chosen)

    def example(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """A decoded upload or canvas as the generator's input (channels or class ids)."""
        dataset = self._config.dataset
        if dataset.label_nc:
            return predict.label_example(image[..., 0] if image.ndim == 3 else image,
                                         "the drawing", dataset)
        return {"A": predict.input_image(image, "the upload", dataset)}

    def translate(self, example: dict[str, np.ndarray]) -> np.ndarray:
        return predict.translate_example(self._translator, self._trained.variables, example,
                                         self._key, 0, self._config)


def _interrupt(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # A repeated SIGTERM must not cut the close.
    raise KeyboardInterrupt


def _refuse(message: str) -> gr.Error:
    """The message shown in the page; one line in the server's log, not a traceback."""
    logging.info("request refused: %s", message)
    return gr.Error(message, print_exception=False)


def _checked_upload(path: str | None) -> str:
    if not path:
        raise _refuse("no image: upload one (PNG, JPEG, BMP, TIFF or WebP)")
    if os.path.getsize(path) == 0:
        raise _refuse("the upload is empty (0 bytes)")
    return path


def _saved_output(image: np.ndarray, folder: str, extension: str = ".png") -> str:
    """The output in the format of `extension`, named by its content, written atomically.
    Gradio then copies it into its cache atomically; an array handed to Gradio is written in
    place instead, so concurrent requests with equal outputs could be served each other's
    half-written file."""
    data = images.encode(image, extension)
    path = os.path.join(folder, hashlib.sha256(data).hexdigest()[:20] + extension)
    if not os.path.exists(path):
        fileio.write_bytes(path, data)
    return path


def _run(requests: Requests, make_example, folder: str) -> tuple[str, str, str]:
    """(the output as shown, the latency line, the output file at full precision: the same
    PNG for photos, else 16-bit PNG or TIFF in the targets' type and channels)."""
    start = time.perf_counter()
    try:
        output = requests.translate(make_example())
    except (images.BadImageError, UserError) as e:
        raise _refuse(str(e).replace(tempfile.gettempdir(), "<upload>")) from None
    latency = f"translated in {1000 * (time.perf_counter() - start):.0f} ms"
    if requests.photo_outputs:
        path = _saved_output(output, folder)
        return path, latency, path
    shown_path = _saved_output(requests.preview(output), folder)
    return shown_path, latency, _saved_output(output, folder,
                                              images.lossless_extension(".png", output))


def _legend(palette: palettes.Palette) -> str:
    swatches = "".join(
        f'<span style="display:inline-block;margin:2px 8px 2px 0"><span style="display:'
        f'inline-block;width:14px;height:14px;vertical-align:middle;background:'
        f'{palettes.hex_colour(colour)};border:1px solid #888"></span> {name}</span>'
        for name, colour in palette.classes)
    return f'<div id="palette-legend">{swatches}</div>'


def _example_inputs(trained: TrainedGenerator, count: int) -> list[np.ndarray]:
    """The first `count` eval-split inputs (what the model was evaluated on); none if the
    data is not there (a model imported or served away from its data)."""
    if count <= 0:
        return []
    try:
        examples = pipeline.eval_examples(trained.config, count)
    except Exception as e:  # Missing folders, unreadable files: the demo works without.
        logging.info("no example inputs (%s: %s)", type(e).__name__, e)
        return []
    shown = []
    for example in examples:
        a = example["A"]
        if trained.config.dataset.label_nc:  # Class ids in the palette's colours.
            a = cityscapes.LABEL_COLOURS[np.minimum(a[..., 0], cityscapes.MAX_LABEL_ID)]
        gray_photo = a.dtype == np.uint8 and a.shape[-1] == 1
        shown.append(np.repeat(a, 3, axis=-1) if gray_photo else a)  # Data stays as it is.
    return shown


def plain_canvas(colour: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    """A canvas of one colour (the background, or a class to paint over)."""
    return np.full((height, width, 3), colour, np.uint8)


def canvas_start(examples: list[np.ndarray], palette: palettes.Palette, height: int,
                 width: int) -> np.ndarray:
    """What the canvas opens on: the first eval-split scene in the palette's colours at the
    model's size, so one click on Translate shows the model on what it learned; a blank
    canvas when the data is not there."""
    if not examples:
        return plain_canvas(palette.background, height, width)
    return images.resize_nearest(examples[0], height, width)  # Label colours stay exact.


def build_app(trained: TrainedGenerator, scratch_dir: str,
              requests: Requests | None = None) -> gr.Blocks:
    """The app; it keeps its example inputs and outputs in `scratch_dir`. `requests` is a
    warmed-up one (`warm_up`), else one is made here (its first request then compiles)."""
    config = trained.config
    requests = requests or Requests(trained)
    palette = palettes.for_config(config)
    height, width = image_hw(config.dataset.image_size)
    examples = _example_inputs(trained, config.serve.num_examples)
    photos = requests.photo_outputs

    def from_canvas(editor):
        canvas = None if editor is None else editor.get("composite")
        if canvas is None or not np.asarray(canvas).size:
            raise _refuse("the canvas is empty: paint on it first")
        snapped = palettes.canvas_to_input(np.asarray(canvas), palette)
        return requests.example(snapped)

    def paint(editor):
        return _run(requests, lambda: from_canvas(editor), scratch_dir)

    def upload(path):
        path = _checked_upload(path)
        return _run(requests, lambda: predict.read_input(path, config.dataset), scratch_dir)

    def translate_api(path):
        return upload(path)[2]

    def fill(editor, name):
        background = plain_canvas(dict(palette.classes)[name], height, width)
        return {"background": background, "layers": [], "composite": background}

    title = f"p2p_jax: {config.model.generator} at step {trained.step}"
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"## {title}\nPaint or upload an input; the output comes back at the "
                    "input's own size.")
        with gr.Row():
            with gr.Column():
                if palette.classes:
                    with gr.Tab("Draw"):
                        start = canvas_start(examples, palette, height, width)
                        colours = [palettes.hex_colour(c) for _, c in palette.classes]
                        canvas = gr.ImageEditor(
                            value={"background": start, "layers": [], "composite": start},
                            type="numpy", image_mode="RGB", canvas_size=(width, height),
                            format="png", fixed_canvas=True, sources=["upload", "clipboard"],
                            brush=gr.Brush(colors=colours, default_color=next(
                                (c for c in colours if c != palettes.hex_colour(
                                    palette.background)), colours[0]),
                                           color_mode="fixed",
                                           default_size=max(2, width // 10)),
                            eraser=gr.Eraser(default_size=max(4, width // 16)),
                            label="canvas", elem_id="canvas")
                        if palette.name != "edges":
                            gr.HTML(_legend(palette))
                            with gr.Row():
                                fill_class = gr.Dropdown([n for n, _ in palette.classes],
                                                         value=palette.classes[0][0],
                                                         label="fill the canvas with")
                                fill_button = gr.Button("Fill", elem_id="fill")
                            fill_button.click(fill, [canvas, fill_class], canvas, api_name=False)
                        draw_button = gr.Button("Translate drawing", variant="primary",
                                                elem_id="translate-drawing")
                with gr.Tab("Upload"):
                    # A file, not gr.Image: the upload reaches predict's decoder (its pixel
                    # limit and messages) undecoded.
                    picture = gr.File(type="filepath", label="input image", elem_id="upload",
                                      file_types=list(images.IMAGE_EXTENSIONS))
                    upload_button = gr.Button("Translate upload", variant="primary",
                                              elem_id="translate-upload")
                    if examples:
                        paths = []
                        for i, example in enumerate(examples):
                            extension = images.lossless_extension(".png", example)
                            paths.append(os.path.join(scratch_dir, f"example_{i}{extension}"))
                            images.write(paths[-1], example)
                        gr.Examples(paths, inputs=picture, label="examples from the eval split")
            with gr.Column():
                output = gr.Image(type="filepath", label="output", elem_id="output",
                                  interactive=False, height=400)
                latency = gr.Markdown(elem_id="latency")
                # Outputs that are not 8-bit photos are shown as previews (eval.preview_channels)
                # and offered here in their own type and channels.
                download = gr.File(label="output at full precision", elem_id="download",
                                   visible=not photos, interactive=False)
        if palette.classes:
            draw_button.click(paint, canvas, [output, latency, download],
                              api_name="translate_drawing")
        upload_button.click(upload, picture, [output, latency, download],
                            api_name="translate_upload")
        # The programmatic endpoint: an image file in, the translated image file out (at full
        # precision).
        api_input = gr.File(type="filepath", visible=False)
        api_output = (gr.Image(type="filepath", visible=False) if photos
                      else gr.File(visible=False))
        api_button = gr.Button(visible=False)
        api_button.click(translate_api, api_input, api_output, api_name="translate")
    return app.queue(default_concurrency_limit=config.serve.concurrency,
                     max_size=config.serve.queue_size)


def warm_up(requests: Requests, height: int, width: int) -> float:
    """Compiles the generator for the canvas size (the shape most requests have); seconds."""
    dataset = requests.config.dataset
    channels, dtype = ((3, "uint8") if dataset.label_nc
                       else (dataset.input_channels, dataset.input_dtype or "uint8"))
    start = time.perf_counter()
    requests.translate(requests.example(np.zeros((height, width, channels), dtype)))
    return time.perf_counter() - start


def _check_address(host: str, port: int) -> None:
    """A port that is taken or an address that is not this machine's: one line, before the
    warm-up."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # As the server binds.
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another "
                            "--port, or --host=127.0.0.1") from None


def launch(app: gr.Blocks, config: ml_collections.ConfigDict, host: str, port: int) -> None:
    """Starts the server without blocking; uploads over `serve.max_upload_mb` are refused
    before they are stored."""
    app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
               show_error=True, css=CSS, max_file_size=f"{config.serve.max_upload_mb}mb")


@contextlib.contextmanager
def _uploads_in(folder: str):
    """Gradio stores uploads and its files under GRADIO_TEMP_DIR (default: a shared
    /tmp/gradio kept forever); here, under the server's own scratch folder, removed with it."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = folder
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def serve(trained: TrainedGenerator, host: str, port: int) -> None:
    """Warms up, serves until Ctrl-C or SIGTERM, then closes the server and removes every
    file it stored (uploads, outputs, examples)."""
    _check_address(host, port)
    requests = Requests(trained)
    seconds = warm_up(requests, *image_hw(trained.config.dataset.image_size))
    logging.info("generator compiled and warmed up in %.1f s", seconds)
    scratch = tempfile.TemporaryDirectory(prefix="p2p_jax_serve_")
    try:
        with _uploads_in(os.path.join(scratch.name, "uploads")):
            app = build_app(trained, scratch.name, requests)
            previous = signal.signal(signal.SIGTERM, _interrupt)
            try:
                launch(app, trained.config, host, port)
                logging.info("serving %s at http://%s:%d (Ctrl-C stops)",
                             trained.config.model.generator, host, app.server_port)
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                logging.info("stopping the server")
            finally:
                app.close()
                if signal.getsignal(signal.SIGTERM) is _interrupt:  # No SIGTERM came (after
                    signal.signal(signal.SIGTERM, previous)  # one, repeats stay ignored).
    finally:
        scratch.cleanup()
