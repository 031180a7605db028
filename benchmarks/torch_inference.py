"""Reference generator inference in PyTorch: the unet_256 of ../shared/bench/torch_reference.py
under `torch.no_grad()`, in train mode (batch statistics and dropout, as the reference's test
script without --eval). Prints one JSON line with images_per_sec.

    TORCH_VENV/bin/python benchmarks/torch_inference.py --batch_size 16 --steps 3
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "bench"))
import torch_reference


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch_reference.unet({256: 8, 128: 7}.get(args.image_size, 8))
    generator.apply(torch_reference.init_weights)
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            generator(images)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    step = statistics.median(times)
    print(json.dumps({"impl": "pytorch-reference-inference", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                      "image_size": args.image_size, "step_time_s": step,
                      "images_per_sec": args.batch_size / step}))


if __name__ == "__main__":
    main()
