"""FID and KID between generated and target images, on FID Inception-v3 pool features.

FID: Fréchet distance between Gaussians fitted to the two feature sets (Heusel et al. 2017).
KID: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random subsets (Binkowski et al. 2018), reported x1 (not x1000 as some papers print it).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from p2p_jax import parallel
from p2p_jax.data import images
from p2p_jax.eval import inception


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), via the symmetric form
    Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), which eigh computes stably."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * trace_root)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (features1, features2)]
    return frechet_distance(*stats[0], *stats[1])


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def kid(features1: np.ndarray, features2: np.ndarray, subset_size: int = 1000,
        num_subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over subsets of min(subset_size, n) of each set."""
    size = min(subset_size, len(features1), len(features2))
    if size < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(features1[rng.choice(len(features1), size, replace=False)],
                             features2[rng.choice(len(features2), size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


class InceptionDistances:
    """Evaluator: FID and KID of generated images against the targets."""

    def __init__(self, weights_path: str, mesh: Mesh, batch_size: int):
        self._setup(inception.load_variables(weights_path), mesh, batch_size)

    @classmethod
    def from_config(cls, eval_config, mesh: Mesh) -> InceptionDistances:
        return cls(eval_config.inception_weights, mesh, eval_config.batch_size)

    @classmethod
    def with_variables(cls, variables: dict, mesh: Mesh, batch_size: int) -> InceptionDistances:
        """With given network variables (tests use random ones; runs load the weights file)."""
        distances = cls.__new__(cls)
        distances._setup(variables, mesh, batch_size)
        return distances

    def _setup(self, variables: dict, mesh: Mesh, batch_size: int) -> None:
        self._variables = parallel.replicated_from_host(variables, mesh)  # Explicit: placed
        self._mesh = mesh  # once, not copied under the training loop's transfer guard.
        self._batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
        model = inception.FIDInceptionV3()
        self._features = jax.jit(lambda variables, x: model.apply(variables, x / 255.0),
                                 out_shardings=parallel.replicated(mesh))

    def features(self, pictures: list[np.ndarray]) -> np.ndarray:
        """(N, 2048) features of uint8 images of any sizes. Each goes in at its own size, as
        floats, and the network resizes it (pytorch-fid's preprocessing); images of one size
        are batched together (one compile per size)."""
        prepared = [images.to_channels(p, 3).astype(np.float32) for p in pictures]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, picture in enumerate(prepared):
            by_shape.setdefault(picture.shape, []).append(index)
        out = np.zeros((len(prepared), inception.FEATURES), np.float64)
        for indices in by_shape.values():
            for start in range(0, len(indices), self._batch_size):
                chunk = indices[start:start + self._batch_size]
                padded = chunk + [chunk[-1]] * (self._batch_size - len(chunk))
                batch = np.stack([prepared[i] for i in padded])
                device = parallel.global_batch_from_host_copy({"x": batch}, self._mesh)["x"]
                out[chunk] = np.asarray(jax.device_get(
                    self._features(self._variables, device)))[:len(chunk)]
        return out

    def __call__(self, examples: list[dict], outputs: list[np.ndarray]) -> dict[str, float]:
        fake = self.features(outputs)
        real = self.features([e["B"] for e in examples])
        kid_mean, kid_std = kid(fake, real)
        return {"fid": fid(fake, real), "kid": kid_mean, "kid_std": kid_std}
