"""The recipe ablation (issue 31): the 2017 recipe, each addition alone, and all of them, at
equal steps over several seeds on a task config, reported as val L1 / PSNR / SSIM mean and
spread, the step rate, and a contact sheet of the same validation images per variant.

  python -m p2p_jax.data.sample_photos --output=/tmp/photos128 --tile=128 --short_side=384
  nohup .venv/bin/python -m benchmarks.ablation --data=/tmp/photos128 --out=/tmp/ablation &

Every run is a plain training run in OUT/<variant>_s<seed>/ started from the task config's
`:reference` variant; a finished run is skipped and an interrupted one resumes, so the script
can be restarted at will. Runs go seed by seed, so a partial table already covers every
variant. The table is OUT/ablation.md, the sheet OUT/contact_sheet.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

VARIANTS = {
    "reference": [],
    "ema": ["--config.model.ema_decay=0.999"],
    "spectral_norm": ["--config.model.spectral_norm_d=True"],
    # D at twice G's rate; G keeps the recipe's 2e-4 (halving it, as TTUR's 1e-4 / 4e-4 does,
    # only slows G at equal steps: L1 0.156 vs 0.114 at seed 0).
    "ttur": ["--config.optimizer.d_learning_rate=4e-4"],
    "r1": ["--config.loss.r1_gamma=1.0"],
    "diff_augment": ["--config.loss.diff_augment=('color','translation','cutout')"],
}
VARIANTS["all"] = [flag for flags in VARIANTS.values() for flag in flags]
# The two that measured best alone on the colorization photos, together.
VARIANTS["ema_r1"] = VARIANTS["ema"] + VARIANTS["r1"]
# Weaker R1 (issue 32: at gamma 1 the patch-summed penalty holds D at chance).
VARIANTS["r1_0.1"] = ["--config.loss.r1_gamma=0.1"]
VARIANTS["r1_0.01"] = ["--config.loss.r1_gamma=0.01"]


def run_flags(args, steps: int) -> list[str]:
    return [f"--config.dataset.path={args.data}", f"--config.dataset.image_size={args.size}",
            f"--config.dataset.load_size={args.size + args.size // 8}",
            f"--config.model.generator={args.generator}", f"--config.model.ngf={args.width}",
            f"--config.model.ndf={args.width}", f"--config.batch_size={args.batch}",
            f"--config.num_train_steps={steps}", "--config.log_every_steps=50",
            f"--config.eval_every_steps={steps}", f"--config.sample_every_steps={steps}",
            f"--config.checkpoint_every_steps={min(200, steps)}",
            f"--config.eval.num_examples={args.eval_examples}",
            f"--config.num_sample_images={args.sheet_images}"]


def run_command(args, variant: str, seed: int) -> list[str]:
    """The training command of one run; `--mode=eval` appended, its evaluation."""
    return [sys.executable, "-m", "p2p_jax.main", f"--config={args.config}:reference",
            f"--workdir={workdir(args, variant, seed)}", f"--config.seed={seed}",
            *run_flags(args, args.steps), *VARIANTS[variant]]


def workdir(args, variant: str, seed: int) -> str:
    return os.path.join(args.out, f"{variant}_s{seed}")


def finished(args, variant: str, seed: int) -> bool:
    return os.path.exists(os.path.join(workdir(args, variant, seed), "samples",
                                       f"step_{args.steps:08d}.png"))


def train(args, variant: str, seed: int) -> None:
    if finished(args, variant, seed):
        return
    command = run_command(args, variant, seed)
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def report_folder(workdir: str, steps: int) -> str:
    return os.path.join(workdir, "eval", f"val_{steps:08d}")


def evaluate(args, variant: str, seed: int) -> None:
    """`--mode=eval` of the final checkpoint with the running batch statistics every variant
    was trained with, so that the comparison is of training recipes alone."""
    if os.path.exists(os.path.join(report_folder(workdir(args, variant, seed), args.steps),
                                   "metrics.json")):
        return
    subprocess.run([*run_command(args, variant, seed), "--mode=eval",
                    "--config.model.eval_mode=True", "--alsologtostderr=false"], check=True)


def results(args, variant: str, seed: int) -> dict[str, float]:
    from p2p_jax.eval import summaries

    evaluate(args, variant, seed)
    run = workdir(args, variant, seed)
    with open(os.path.join(report_folder(run, args.steps), "metrics.json")) as f:
        final = json.load(f)["metrics"]
    rates = [value for _, value in summaries.read_scalars(run)["train/steps_per_sec"]]
    # The first logged window holds the compile; the median of the rest is the step rate.
    return {**final, "steps_per_sec": float(np.median(rates[1:] or rates))}


def table(args, done: dict[str, list[dict[str, float]]]) -> str:
    lines = [f"Ablation: {args.config} `:reference` + each addition, {args.steps} steps, "
             f"{args.generator} ngf {args.width}, {args.size} px, batch {args.batch}, "
             f"{args.eval_examples} held-out images; mean ± std over seeds.", "",
             "| variant | seeds | L1 | PSNR (dB) | SSIM | steps/s |",
             "| --- | --- | --- | --- | --- | --- |"]

    def cell(runs, key, digits):
        values = np.array([r[key] for r in runs])
        return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"

    for variant, runs in done.items():
        if runs:
            lines.append(f"| {variant} | {len(runs)} | {cell(runs, 'l1', 4)} | "
                         f"{cell(runs, 'psnr', 2)} | {cell(runs, 'ssim', 3)} | "
                         f"{cell(runs, 'steps_per_sec', 2)} |")
    return "\n".join(lines) + "\n"


def contact_sheet(args, variants: list[str]) -> None:
    """The same validation images through seed 0 of each variant: one row per image, columns
    input | each variant | target, labelled."""
    from p2p_jax.data import images
    from p2p_jax.eval import grids

    folders = {v: os.path.join(report_folder(workdir(args, v, 0), args.steps), "images")
               for v in variants}
    folders = {v: f for v, f in folders.items() if os.path.isdir(f)}
    if not folders:
        return
    first = next(iter(folders.values()))
    names = sorted(n[:-len("_output.png")] for n in os.listdir(first)
                   if n.endswith("_output.png"))[:args.sheet_images]
    columns = [("input", first, "input"), *[(v, f, "output") for v, f in folders.items()],
               ("target", first, "target")]
    rows = [[images.read(os.path.join(folder, f"{name}_{kind}.png"))
             for _, folder, kind in columns] for name in names]
    gap = 4
    header = grids.column_labels([image.shape[1] for image in rows[0]],
                                 [title for title, _, _ in columns], gap=gap)
    band = np.full((gap, header.shape[1], 3), 255, np.uint8)
    sheet = [header]
    for row in rows:
        sheet += [grids.side_by_side(row, gap=gap), band]
    images.write(os.path.join(args.out, "contact_sheet.png"), np.concatenate(sheet[:-1], 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="A photo folder with train/ and val/.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default="configs/colorization.py")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--generator", default="unet_128")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval_examples", type=int, default=21)
    parser.add_argument("--sheet_images", type=int, default=6)
    parser.add_argument("--tabulate_only", action="store_true",
                        help="Tabulate the finished runs; train none.")
    args = parser.parse_args()
    variants = args.variants.split(",")
    done = {variant: [] for variant in variants}
    for seed in range(args.seeds):
        for variant in variants:
            if args.tabulate_only and not finished(args, variant, seed):
                continue
            train(args, variant, seed)
            done[variant].append(results(args, variant, seed))
            with open(os.path.join(args.out, "ablation.md"), "w") as f:
                f.write(table(args, done))
            contact_sheet(args, variants)
    print(table(args, done))


if __name__ == "__main__":
    main()
