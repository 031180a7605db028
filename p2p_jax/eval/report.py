"""`--mode=eval` outputs people look at: per-example images, an HTML page, curves, a contact sheet.

  W/eval/<split>_<step>/metrics.json     means and per-image values
  W/eval/<split>_<step>/index.html       input | output | target per row with its metrics,
                                         sortable by any column (worst L1 first at opening)
  W/eval/<split>_<step>/images/          NAME_input.png, NAME_output.png, NAME_target.png
  W/eval/<split>_<step>/curves.png       training losses and eval metrics over steps
  W/eval/<split>_<step>/contact_sheet.png
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import sys

import jax
import numpy as np
import tqdm
from absl import logging
from etils import epath
from matplotlib.figure import Figure

from p2p_jax import fileio
from p2p_jax.data import images, pipeline
from p2p_jax.eval import evaluators, grids, scoring, summaries
from p2p_jax.models.generation import EVAL_SEED_OFFSET, TrainedGenerator, host_key


def _safe_name(name: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(name)[0])[:80]
    return f"{index:05d}_{stem}"


def write_images(examples: list[dict], outputs: list[np.ndarray],
                 folder: epath.Path) -> list[dict[str, str]]:
    """One PNG per input, output and target; returns their paths relative to `folder`."""
    files = []
    for index, (example, output) in enumerate(zip(examples, outputs, strict=True)):
        stem = _safe_name(example.get("name", ""), index)
        paths = {}
        for role, image in (("input", example["A"]), ("output", output),
                            ("target", example.get("B"))):
            if image is None:
                continue
            paths[role] = f"images/{stem}_{role}.png"
            images.write(folder / paths[role], image)
        files.append(paths)
    return files


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; text-align: center; }}
th {{ cursor: pointer; background: #eee; }}
img {{ max-width: 256px; image-rendering: pixelated; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
<p><img src="curves.png" alt="training curves" style="max-width: 100%"></p>
<table id="results"><thead><tr>{header}</tr></thead><tbody>
{rows}
</tbody></table>
<script>
// Click a metric header to sort by it; click again to reverse.
document.querySelectorAll("th[data-key]").forEach(function (th) {{
  th.addEventListener("click", function () {{
    var body = document.querySelector("#results tbody");
    var rows = Array.from(body.rows), key = th.dataset.key;
    var dir = th.dataset.dir === "desc" ? 1 : -1; th.dataset.dir = dir === 1 ? "asc" : "desc";
    rows.sort(function (a, b) {{ return dir * (a.dataset[key] - b.dataset[key]); }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }});
}});
</script></body></html>
"""


def write_html(folder: epath.Path, title: str, examples: list[dict], files: list[dict],
               scores: dict[str, np.ndarray], means: dict[str, float],
               has_curves: bool) -> None:
    """The results page: rows sorted worst-first by L1 (highest), other columns on click."""
    names = list(scores)
    order = (np.argsort(-np.nan_to_num(scores["l1"], nan=-1)) if "l1" in scores
             else range(len(examples)))
    header = "<th>#</th><th>name</th><th>input</th><th>output</th><th>target</th>" + "".join(
        f'<th data-key="{k}">{html.escape(k)}</th>' for k in names)
    rows = []
    for i in order:
        data = " ".join(f'data-{k}="{float(scores[k][i]):.6g}"' for k in names)
        cells = "".join(f'<td><img src="{html.escape(files[i][r])}" alt="{r}"></td>'
                        if r in files[i] else "<td></td>" for r in ("input", "output", "target"))
        metrics_cells = "".join(f"<td>{float(scores[k][i]):.4f}</td>" for k in names)
        rows.append(f'<tr {data}><td>{i}</td><td>{html.escape(examples[i].get("name", ""))}'
                    f"</td>{cells}{metrics_cells}</tr>")
    summary = ", ".join(f"{k} {v:.4f}" for k, v in means.items()) + f" over {len(examples)} images"
    page = _PAGE.format(title=html.escape(title), summary=html.escape(summary),
                        header=header, rows="\n".join(rows))
    if not has_curves:
        page = page.replace('<p><img src="curves.png" alt="training curves" '
                            'style="max-width: 100%"></p>\n', "")
    fileio.write_text(folder / "index.html", page)


CURVE_TAGS = ("train/g_loss", "train/d_loss", "train/g_gan", "train/g_l1", "eval/l1",
              "eval/psnr", "eval/ssim", "eval/ms_ssim", "eval/fid", "eval/kid",
              "eval/fcn_pixel_acc", "eval/fcn_class_iou")


def write_curves(series: dict[str, list[tuple[int, float]]], path: epath.Path) -> bool:
    """Losses and metrics over steps, one panel each; False if there is nothing to plot."""
    tags = [t for t in CURVE_TAGS if series.get(t)]
    if not tags:
        return False
    columns = min(len(tags), 4)
    rows = math.ceil(len(tags) / columns)
    figure = Figure(figsize=(4 * columns, 3 * rows))  # No pyplot: no global figure state.
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(tags):]:
        ax.axis("off")
    for ax, tag in zip(axes.flat, tags, strict=False):
        steps, values = zip(*series[tag], strict=True)
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=80)
    fileio.write_bytes(path, png.getvalue())  # Atomic, and to gs:// as well.
    return True


# Sheet thumbnails: at the model's own resolution, enlarged by whole pixels to at least
# SHEET_MIN_HEIGHT (crisp, not interpolated) and reduced to at most SHEET_MAX_HEIGHT.
SHEET_MIN_HEIGHT, SHEET_MAX_HEIGHT = 128, 256


def sheet_height(image_height: int) -> int:
    if image_height >= SHEET_MIN_HEIGHT:
        return min(image_height, SHEET_MAX_HEIGHT)
    return image_height * -(-SHEET_MIN_HEIGHT // image_height)


def _thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    image = grids.as_rgb(image)
    width = max(round(image.shape[1] * height / image.shape[0]), 1)
    if height > image.shape[0] and height % image.shape[0] == 0:  # Whole pixels: crisp.
        return images.resize_nearest(image, height, width)
    return images.resize(image, height, width)


def contact_sheet(examples: list[dict], outputs: list[np.ndarray], limit: int = 64,
                  max_width: int = 2048) -> np.ndarray:
    """(input | output | target) of the first `limit` examples in a grid under a labelled
    header, at the model's resolution (`sheet_height`), up to four examples a row within
    `max_width` pixels."""
    pairs = list(zip(examples, outputs, strict=True))[:limit]
    height = sheet_height(outputs[0].shape[0])
    names = ["input", "output"] + (["target"] if "B" in examples[0] else [])
    rows = [[_thumbnail(p, height)
             for p in [example["A"], output] + ([example["B"]] if "B" in example else [])]
            for example, output in pairs]
    cells = [grids.side_by_side(parts) for parts in rows]
    width = max(c.shape[1] for c in cells)
    columns = max(1, min(4, max_width // (width + 8)))
    cells = [np.pad(c, ((4, 4), (4, 4 + width - c.shape[1]), (0, 0)), constant_values=255)
             for c in cells]
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % columns)
    grid = np.concatenate([np.concatenate(cells[r:r + columns], axis=1)
                           for r in range(0, len(cells), columns)], axis=0)
    header = grids.column_labels([p.shape[1] for p in rows[0]], names, gap=2, indent=4)
    header = np.pad(header, ((0, 0), (0, width + 8 - header.shape[1]), (0, 0)),
                    constant_values=255)  # One cell's width, repeated over the columns.
    return _stack(np.tile(header, (1, min(columns, len(pairs)), 1)), grid)


def _stack(header: np.ndarray, grid: np.ndarray) -> np.ndarray:
    header = np.pad(header, ((0, 0), (0, grid.shape[1] - header.shape[1]), (0, 0)),
                    constant_values=255)
    return np.concatenate([header, grid], axis=0)


def write_report(workdir: str, folder: epath.Path, title: str, examples: list[dict],
                 outputs: list[np.ndarray], scores: dict[str, np.ndarray],
                 means: dict[str, float], sheet_examples: int = 64) -> np.ndarray:
    """Writes the report folder; returns the contact sheet (for TensorBoard)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = write_images(examples, outputs, folder)
    has_curves = write_curves(summaries.read_scalars(workdir), folder / "curves.png")
    sheet = contact_sheet(examples, outputs, limit=sheet_examples)
    images.write(folder / "contact_sheet.png", sheet)
    write_html(folder, title, examples, files, scores, means, has_curves)
    record = {"metrics": means, "num_examples": len(examples),
              "per_image": {k: [None if np.isnan(x) else float(x) for x in v]
                            for k, v in scores.items()},
              "names": [e.get("name", "") for e in examples]}
    fileio.write_text(folder / "metrics.json", json.dumps(record, indent=2))
    return sheet


def evaluate_checkpoint(trained: TrainedGenerator, workdir: str) -> epath.Path:
    """`--mode=eval`: the whole `eval.split` through a restored generator; metrics to
    TensorBoard (`eval_<split>/...`) and the report folder, returned."""
    config, step = trained.config, trained.step
    split = config.eval.split
    examples = pipeline.eval_examples(config, split=split)
    extra = evaluators.build(config.eval, trained.mesh)
    logging.info("evaluating step %d on the %d images of the %s split", step, len(examples),
                 split)
    chief = jax.process_index() == 0
    with tqdm.tqdm(total=len(examples), unit="img", desc="eval", file=sys.stderr,
                   disable=None if chief else True) as bar:  # None: a terminal only.
        outputs, scores, means = scoring.evaluate(
            scoring.scoring_translator(trained.generator, trained.mesh, config),
            trained.variables, examples, host_key(config.seed + EVAL_SEED_OFFSET), extra,
            on_batch=bar.update)
    folder = epath.Path(workdir) / "eval" / f"{split}_{step:08d}"
    if chief:
        shown, shown_outputs = grids.previews(examples, outputs, config.dataset,
                                              tuple(config.eval.preview_channels))
        sheet = write_report(workdir, folder, f"{workdir}: {split} split at step {step}",
                             shown, shown_outputs, scores, means, config.eval.sheet_examples)
        writer = summaries.create_writer(workdir)
        writer.write_scalars(step, {f"eval_{split}/{k}": v for k, v in means.items()})
        writer.write_images(step, {f"eval_{split}/contact_sheet": sheet[None]})
        writer.close()
        logging.info("%s split at step %d: %s", split, step,
                     ", ".join(f"{k} {v:.4g}" for k, v in sorted(means.items())))
    return folder
