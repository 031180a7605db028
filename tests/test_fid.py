"""FID/KID maths against hand-computed values; the Inception extractor and its weight loading."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from p2p_jax import parallel
from p2p_jax.errors import UserError
from p2p_jax.eval import fid, inception


def test_frechet_distance_of_diagonal_gaussians():
    """Diagonal covariances: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    want = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want)


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 0.3
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    want = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1 + s2)
            - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
    assert fid.fid(x, y) == pytest.approx(want, rel=1e-6)
    assert fid.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(1.0, size=(4, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    mean, std = fid.kid(x, y, subset_size=1000, num_subsets=3)
    # Subsets of min(1000, 5, 4) = 4 from x: check the estimator itself on the full sets.
    assert fid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)
    assert np.isfinite(mean) and std >= 0


def _state_dict_of(variables):
    """Flax variables written the way pytorch-fid names them (the inverse of the loader)."""
    state = collections.OrderedDict()
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    leaf_names = {("params", "kernel"): "conv.weight", ("params", "scale"): "bn.weight",
                  ("params", "bias"): "bn.bias", ("batch_stats", "mean"): "bn.running_mean",
                  ("batch_stats", "var"): "bn.running_var"}
    for path, value in flat:
        keys = [p.key for p in path]
        name = ".".join([*keys[1:-2], leaf_names[keys[0], keys[-1]]])
        value = np.asarray(value)
        state[name] = value.transpose(3, 2, 0, 1) if keys[-1] == "kernel" else value
    state["fc.weight"] = np.zeros((1008, 2048), np.float32)
    return state


@pytest.mark.slow
def test_inception_features_shape_determinism_and_weight_mapping(devices, tmp_path):
    model = inception.FIDInceptionV3()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3)))
    rng = jax.random.PRNGKey(1)
    variables["batch_stats"] = jax.tree.map(  # Non-trivial statistics to map too.
        lambda v: jax.random.uniform(rng, v.shape, minval=0.5, maxval=1.5),
        variables["batch_stats"])
    mapped = inception.variables_from_state_dict(_state_dict_of(variables))
    jax.tree.map(np.testing.assert_array_equal, mapped, variables)

    mesh = parallel.create_mesh(devices=devices[:2])
    pictures = [np.random.default_rng(i).integers(0, 256, (40, 56, 3), dtype=np.uint8)
                for i in range(3)]
    pictures.insert(1, np.random.default_rng(3).integers(0, 256, (24, 20, 1), dtype=np.uint8))
    features = _features(variables, mesh, pictures)
    assert features.shape == (4, inception.FEATURES) and np.isfinite(features).all()
    for i in (1, 2):  # Independent of the batch and of the other sizes beside it.
        np.testing.assert_allclose(_features(variables, mesh, pictures[i:i + 1])[0],
                                   features[i], rtol=1e-4, atol=1e-5)
    # Each image goes in at its own size, as floats; only the network resizes it.
    direct = model.apply(variables, jnp.asarray(pictures[2][None], jnp.float32) / 255.0)
    np.testing.assert_allclose(features[2], direct[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        inception.load_variables(str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="does not hold the FID Inception-v3 weights"):
        inception.load_variables("tests/data/tiny_state_zip.pth")


def _torch_bilinear(image, height, width):
    """NumPy port of torch's F.interpolate(mode='bilinear', align_corners=False) on (H, W, C):
    source coordinate (i + 0.5) * scale - 0.5, clamped at 0, blended with its right neighbour
    (clamped at the last pixel)."""
    def taps(size_in, size_out):
        source = np.maximum((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0.0)
        first = np.minimum(np.floor(source).astype(int), size_in - 1)
        return first, np.minimum(first + 1, size_in - 1), source - first

    y0, y1, fy = taps(image.shape[0], height)
    x0, x1, fx = taps(image.shape[1], width)
    rows = image[y0] * (1 - fy)[:, None, None] + image[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


@pytest.mark.parametrize("shape", [(64, 48), (600, 404), (299, 299), (299, 1000)])
def test_resize_to_the_network_input_is_pytorch_fids(shape):
    image = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    resized = inception.resize_to_input(jnp.asarray(image[None]))[0]
    size = inception.INPUT_SIZE
    np.testing.assert_allclose(resized, _torch_bilinear(image.astype(np.float64), size, size),
                               atol=1e-4)  # float32 weights: under 1/40 of a grey level.


def _features(variables, mesh, pictures):
    extractor = fid.InceptionDistances.with_variables(variables, mesh, batch_size=2)
    return extractor.features(pictures)
