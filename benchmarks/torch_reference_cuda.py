"""The reference iteration of ../shared/bench/torch_reference.py on a CUDA GPU, for comparing
`python -m p2p_jax.benchmark` there: the same networks, losses and update order, f32 as its
users run it (cuDNN's default TF32 convolutions) or under bf16 autocast (--amp). Prints one JSON
line for training and one for generator inference (no_grad, train mode, as its test script).

    python3 benchmarks/torch_reference_cuda.py --batch_size 16 [--amp] [--channels_last]
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
import torch.nn as nn

_DEFAULT_REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "bench"


def median_seconds(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--reference_dir", default=str(_DEFAULT_REFERENCE))
    args = parser.parse_args()
    sys.path.insert(0, args.reference_dir)
    import torch_reference

    torch.manual_seed(0)
    device = torch.device("cuda")
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    generator = torch_reference.unet({256: 8, 128: 7}.get(args.image_size, 8))
    discriminator = torch_reference.patchgan()
    for net in (generator, discriminator):
        net.apply(torch_reference.init_weights)
        net.to(device, memory_format=memory_format)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    a = (torch.rand(shape, device=device) * 2 - 1).to(memory_format=memory_format)
    b = (torch.rand(shape, device=device) * 2 - 1).to(memory_format=memory_format)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=args.amp)

    def train_step():
        with autocast:
            fake = generator(a)
            discriminator.requires_grad_(True)
            opt_d.zero_grad()
            pf = discriminator(torch.cat([a, fake.detach()], 1))
            pr = discriminator(torch.cat([a, b], 1))
            loss_d = 0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))
        loss_d.backward()
        opt_d.step()
        discriminator.requires_grad_(False)
        opt_g.zero_grad()
        with autocast:
            pf = discriminator(torch.cat([a, fake], 1))
            loss_g = bce(pf, torch.ones_like(pf)) + 100.0 * l1(fake.float(), b)
        loss_g.backward()
        opt_g.step()

    def predict():
        with torch.no_grad(), autocast:
            generator(a)

    common = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
              "batch_size": args.batch_size, "image_size": args.image_size,
              "dtype": "bfloat16-autocast" if args.amp else "float32",
              "channels_last": args.channels_last}
    for name, fn in (("train", train_step), ("predict", predict)):
        step_s = median_seconds(fn, args.steps, args.warmup)
        print(json.dumps({"impl": "pytorch-reference-cuda", "benchmark": name, **common,
                          "step_time_s": round(step_s, 5),
                          "images_per_sec": round(args.batch_size / step_s, 2)}), flush=True)


if __name__ == "__main__":
    main()
