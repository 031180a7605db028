"""Sources, transforms, determinism, iterator-state resume and per-process sharding."""

import hashlib

import numpy as np
import pytest
from absl import flags

from p2p_jax.data import pipeline, sources, synthetic, transforms


class ScriptedRng:
    """Stands in for np.random.Generator with chosen draws, for hand-computed crops."""

    def __init__(self, integers, uniform):
        self._integers, self._uniform = list(integers), uniform

    def integers(self, low, high):
        value = self._integers.pop(0)
        assert low <= value < high
        return value

    def random(self):
        return self._uniform


def test_synthetic_scenes_are_deterministic_and_distinct():
    train = synthetic.SyntheticScenes(10, 48, seed=3, split="train")
    again = synthetic.SyntheticScenes(10, 48, seed=3, split="train")
    val = synthetic.SyntheticScenes(10, 48, seed=3, split="val")
    np.testing.assert_array_equal(train[4]["B"], again[4]["B"])
    assert not np.array_equal(train[4]["B"], train[5]["B"])
    assert not np.array_equal(train[4]["B"], val[4]["B"])
    pair = train[0]
    assert pair["A"].shape == pair["B"].shape == (48, 48, 3) and pair["A"].dtype == np.uint8
    # Labels use only the palette colours.
    colours = {tuple(c) for c in pair["A"].reshape(-1, 3)}
    assert colours <= {tuple(c) for c in synthetic.PALETTE}


def test_crop_and_flip_are_identical_for_a_and_b():
    a = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    b = 255 - a
    out = transforms.preprocess({"A": a, "B": b}, ScriptedRng([1, 3], 0.2), mode="crop",
                                     load_size=8, image_size=4, flip=True)
    np.testing.assert_array_equal(out["A"], a[1:5, 3:7][:, ::-1])
    np.testing.assert_array_equal(out["B"], b[1:5, 3:7][:, ::-1])
    kept = transforms.preprocess({"A": a, "B": b}, ScriptedRng([0, 0], 0.7), mode="crop",
                                      load_size=8, image_size=4, flip=True)
    np.testing.assert_array_equal(kept["A"], a[:4, :4])


def test_resize_modes_give_reference_shapes():
    a = np.zeros((50, 100, 3), np.uint8)
    pair = {"A": a, "B": a}
    rng = np.random.default_rng(0)
    out = transforms.preprocess(pair, rng, "resize_and_crop", 40, 32, False)
    assert out["A"].shape == (32, 32, 3)
    out = transforms.preprocess(pair, rng, "scale_width", 64, 32, False)
    assert out["A"].shape == (32, 64, 3)
    out = transforms.preprocess(pair, rng, "scale_width_and_crop", 64, 32, False)
    assert out["A"].shape == (32, 32, 3)
    out = transforms.preprocess(pair, rng, "none", 64, 32, False)
    assert out["A"].shape == (50, 100, 3)
    with pytest.raises(ValueError, match="smaller than the crop dataset.image_size=64"):
        transforms.preprocess(pair, rng, "crop", 64, 64, False)


def test_iterator_state_resumes_with_the_next_batch(tiny_config):
    it = pipeline.create_train_iterator(tiny_config, 0, 1)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]  # Crosses the 16-example epoch boundary.
    resumed = pipeline.create_train_iterator(tiny_config, 0, 1)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["A"], want["A"])
        np.testing.assert_array_equal(got["B"], want["B"])


def digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def test_process_shards_are_disjoint_and_cover_the_epoch(tiny_config):
    tiny_config.dataset.preprocess = "none"
    tiny_config.dataset.load_size = 32  # The scenes are drawn at the training size.
    tiny_config.dataset.flip = False
    tiny_config.batch_size = 4  # 2 per process; the epoch is 16 examples, 8 per process.
    seen = []
    for index in range(2):
        it = pipeline.create_train_iterator(tiny_config, index, 2)
        seen.append({digest(img) for _ in range(4) for img in next(it)["B"]})
    source = synthetic.SyntheticScenes(16, tiny_config.dataset.load_size, tiny_config.seed,
                                       "train")
    everything = {digest(source[i]["B"]) for i in range(16)}
    assert len(seen[0]) == len(seen[1]) == 8
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == everything


def test_global_batches_do_not_depend_on_the_process_count(tiny_config):
    single = pipeline.create_train_iterator(tiny_config, 0, 1)
    split = [pipeline.create_train_iterator(tiny_config, i, 4) for i in range(4)]
    for _ in range(5):  # Past the first epoch, so reshuffling is covered too.
        whole = next(single)
        parts = [next(it) for it in split]
        np.testing.assert_array_equal(whole["A"], np.concatenate([p["A"] for p in parts]))
        np.testing.assert_array_equal(whole["B"], np.concatenate([p["B"] for p in parts]))


def test_start_batch_positions_the_stream_like_consuming_it(tiny_config):
    it = pipeline.create_train_iterator(tiny_config, 1, 2)
    for _ in range(5):
        next(it)
    started = pipeline.create_train_iterator(tiny_config, 1, 2, start_batch=5)
    for _ in range(3):
        np.testing.assert_array_equal(next(started)["B"], next(it)["B"])


def test_worker_processes_give_the_same_batches(tiny_config):
    flags.FLAGS.mark_as_parsed()  # Grain workers read absl flags; app.run parses them in runs.
    tiny_config.dataset.worker_count = 1
    workers = pipeline.create_train_iterator(tiny_config, 0, 1)
    tiny_config.dataset.worker_count = 0
    in_process = pipeline.create_train_iterator(tiny_config, 0, 1)
    for _ in range(3):
        got, want = next(workers), next(in_process)
        for key in ("A", "B", "skipped"):
            np.testing.assert_array_equal(got[key], want[key])
    tiny_config.dataset.worker_count = 1  # Worker iterators checkpoint and resume too.
    resumed = pipeline.create_train_iterator(tiny_config, 0, 1)
    resumed.set_state(workers.get_state())
    np.testing.assert_array_equal(next(resumed)["B"], next(in_process)["B"])


@pytest.mark.parametrize("mode", ["none", "scale_width"])
def test_sizes_that_cannot_batch_are_refused_at_start_up(tiny_config, mode):
    """Files kept at their own size (36x36 here) cannot fill a batch of 32x32 crops: one line
    when the iterator is made, before any compilation, not a batching traceback later."""
    tiny_config.dataset.preprocess = mode
    with pytest.raises(sources.DatasetError,
                       match=f"dataset.preprocess='{mode}' gives 36x36 training images"):
        pipeline.create_train_iterator(tiny_config, 0, 1)
