"""Per-image quality metrics in JAX on [0, 1] images (N, H, W, C): L1, PSNR, SSIM, MS-SSIM.

SSIM follows Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True`
(11-tap Gaussian, sigma 1.5, population covariance, borders excluded); MS-SSIM follows
Wang et al. 2003 as `tf.image.ssim_multiscale` computes it (five scales, 2x2 average pooling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_K1, _K2 = 0.01, 0.03
_SIGMA, _TAPS = 1.5, 11
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# The smallest side MS-SSIM can use: the Gaussian window must fit at the coarsest scale.
MS_SSIM_MIN_SIZE = (_TAPS - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def _gaussian_blur(x: jax.Array) -> jax.Array:
    """Separable 11-tap Gaussian per channel, 'VALID' (the border-excluded SSIM map)."""
    taps = np.exp(-0.5 * (np.arange(_TAPS) - _TAPS // 2) ** 2 / _SIGMA**2)
    taps = jnp.asarray(taps / taps.sum(), x.dtype)
    channels = x.shape[-1]
    dn = ("NHWC", "HWIO", "NHWC")
    for kernel in (taps.reshape(_TAPS, 1, 1, 1), taps.reshape(1, _TAPS, 1, 1)):
        x = jax.lax.conv_general_dilated(x, jnp.tile(kernel, (1, 1, 1, channels)), (1, 1),
                                         "VALID", dimension_numbers=dn,
                                         feature_group_count=channels)
    return x


def _ssim_terms(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean SSIM and contrast-structure term, each (N, C)."""
    c1, c2 = _K1**2, _K2**2
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x**2
    var_y = _gaussian_blur(y * y) - mu_y**2
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (jnp.mean(luminance * contrast_structure, axis=(1, 2)),
            jnp.mean(contrast_structure, axis=(1, 2)))


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(_ssim_terms(x, y)[0], axis=-1)


def _halve(x: jax.Array) -> jax.Array:
    """2x2 average pooling; odd sides first padded symmetrically at the end, as TF does."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim(x: jax.Array, y: jax.Array) -> jax.Array:
    """Needs both sides >= MS_SSIM_MIN_SIZE (161 px)."""
    if min(x.shape[1:3]) < MS_SSIM_MIN_SIZE:
        raise ValueError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIZE}x"
                         f"{MS_SSIM_MIN_SIZE}; got {x.shape[1]}x{x.shape[2]}")
    factors = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        full, contrast_structure = _ssim_terms(x, y)
        last = scale == len(MS_SSIM_WEIGHTS) - 1
        factors.append(jax.nn.relu(full if last else contrast_structure))
        x, y = _halve(x), _halve(y)
    stacked = jnp.stack(factors, axis=-1)  # (N, C, scales)
    per_channel = jnp.prod(stacked ** jnp.asarray(MS_SSIM_WEIGHTS, x.dtype), axis=-1)
    return jnp.mean(per_channel, axis=-1)


def image_metrics(outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """Every metric the image size allows, per image, between [-1, 1] batches."""
    x = (outputs.astype(jnp.float32) + 1.0) / 2.0
    y = (targets.astype(jnp.float32) + 1.0) / 2.0
    results = {"l1": l1(x, y), "psnr": psnr(x, y)}
    if min(x.shape[1:3]) >= _TAPS:
        results["ssim"] = ssim(x, y)
    if min(x.shape[1:3]) >= MS_SSIM_MIN_SIZE:
        results["ms_ssim"] = ms_ssim(x, y)
    return results
