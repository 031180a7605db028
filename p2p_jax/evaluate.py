"""Evaluation of the generator on a held-out split: L1 and PSNR on [0, 1] images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from p2p_jax import parallel, train


def image_metrics(outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """Per-image L1 and PSNR between [-1, 1] images, measured on the [0, 1] scale."""
    x = (outputs.astype(jnp.float32) + 1.0) / 2.0
    y = (targets.astype(jnp.float32) + 1.0) / 2.0
    axes = tuple(range(1, x.ndim))
    mse = jnp.mean((x - y) ** 2, axis=axes)
    return {"l1": jnp.mean(jnp.abs(x - y), axis=axes),
            "psnr": 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))}


class Evaluator:
    """Generates for fixed examples in device-divisible batches and averages the metrics."""

    def __init__(self, models: train.Pix2Pix, mesh: Mesh, batch_size: int):
        self._mesh = mesh
        self._batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size

        def run(state, images, targets, rng):
            outputs = train.generate(models, state, images, rng)
            return outputs, image_metrics(outputs, train.to_float(targets))

        self._run = jax.jit(run, out_shardings=parallel.replicated(mesh))

    def generate(self, state: train.TrainState, examples: dict[str, np.ndarray],
                 rng: jax.Array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Returns (outputs in [-1, 1], per-image metrics) for all examples, as NumPy."""
        n = len(examples["A"])
        outputs, metrics = [], []
        for start in range(0, n, self._batch_size):
            chunk = {k: v[start:start + self._batch_size] for k, v in examples.items()}
            real = len(chunk["A"])
            pad = self._batch_size - real  # Padding never changes the real rows (per-image norm).
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in chunk.items()}
            batch = parallel.global_batch_from_host_copy(chunk, self._mesh)
            key = jax.random.fold_in(rng, jax.device_put(np.uint32(start)))
            out, m = jax.device_get(self._run(state, batch["A"], batch["B"], key))
            outputs.append(out[:real])
            metrics.append({k: v[:real] for k, v in m.items()})
        return np.concatenate(outputs), {k: np.concatenate([m[k] for m in metrics])
                                         for k in metrics[0]}

    def evaluate(self, state: train.TrainState, examples: dict[str, np.ndarray],
                 rng: jax.Array) -> dict[str, float]:
        _, metrics = self.generate(state, examples, rng)
        return {k: float(np.mean(v)) for k, v in metrics.items()}
