"""Times each convolution of pix2pixHD's 512x256 step in XLA's form and in the CPU form
`model.conv_impl=cpu` picks (p2p_jax/ops/cpu.py), forward and forward + VJP (a random
cotangent, so nothing folds away). One JSON line per layer; the process runs under the same
huge-page malloc as training.

    .venv/bin/python -m benchmarks.conv_forms [--reps 3] [--only "G tail"]
"""
import argparse
import json
import time

from p2p_jax import host

host.prepare_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from p2p_jax import ops  # noqa: E402

# (name, batch, input h, w, in, out, kernel, stride, padding, input gradient wanted)
LAYERS = [
    ("G residual conv", 1, 18, 34, 1024, 1024, 3, 1, 0, True),
    ("G head 7x7 (labels)", 1, 262, 518, 36, 64, 7, 1, 0, False),
    ("G down_0", 1, 256, 512, 64, 128, 3, 2, 1, True),
    ("G tail 7x7 (to RGB)", 1, 262, 518, 64, 3, 7, 1, 0, True),
    ("D layer_0 (labels + image)", 1, 256, 512, 39, 64, 4, 2, 2, True),
    ("D layer_1", 1, 129, 257, 64, 128, 4, 2, 2, True),
    ("VGG conv3 256", 1, 64, 128, 256, 256, 3, 1, 1, True),
    ("VGG conv4 512", 1, 32, 64, 512, 512, 3, 1, 1, True),
    ("VGG conv5_1 512", 1, 16, 32, 512, 512, 3, 1, 1, True),
]


def best_ms(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return round(1000 * min(times), 1)


def time_layer(layer: tuple, rng: np.random.Generator, reps: int) -> dict:
    name, n, h, w, cin, cout, k, stride, pad, input_grad = layer
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
    out = jax.eval_shape(lambda x, kernel: ops.conv2d(x, kernel, stride, pad), x, kernel)
    cotangent = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
    record = {"layer": name, "input": [n, h, w, cin], "out_channels": cout, "kernel": k,
              "stride": stride}
    for impl in ("xla", "cpu"):
        def forward(x, kernel, impl=impl):
            return ops.conv2d(x, kernel, stride, pad, impl)

        def forward_and_vjp(x, kernel, cotangent, forward=forward):
            y, vjp = jax.vjp(forward, x, kernel)
            grads = vjp(cotangent)
            return y, grads if input_grad else grads[1]

        record[f"{impl}_fwd_ms"] = best_ms(jax.jit(forward), (x, kernel), reps)
        record[f"{impl}_fwd_vjp_ms"] = best_ms(jax.jit(forward_and_vjp), (x, kernel, cotangent),
                                               reps)
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="", help="layers whose name starts with this")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for layer in LAYERS:
        if not layer[0].startswith(args.only):
            continue
        print(json.dumps(time_layer(layer, rng, args.reps)), flush=True)


if __name__ == "__main__":
    main()
