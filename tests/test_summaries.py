"""TensorBoard event files without TensorFlow: what we write TensorBoard reads, and what we read
back equals what TensorFlow's writer (CLU's) wrote."""

import numpy as np

from p2p_jax.eval import summaries


def test_our_event_files_read_in_tensorboard_and_back(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    writer = summaries.EventFileWriter(str(tmp_path))
    writer.write_hparams({"model.ngf": 8, "model.norm": "batch", "dataset.flip": True,
                          "debug.nonfinite_steps": ()})
    writer.write_scalars(1, {"train/g_loss": 2.5, "eval/l1": np.float32(0.25)})
    writer.write_scalars(2, {"train/g_loss": 2.0})
    grid = np.random.default_rng(0).integers(0, 256, (1, 6, 10, 3), dtype=np.uint8)
    writer.write_images(2, {"samples/grid": grid})
    writer.close()

    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("train/g_loss")] == [(1, 2.5),
                                                                               (2, 2.0)]
    image, = accumulator.Images("samples/grid")
    assert (image.step, image.width, image.height) == (2, 10, 6)
    import cv2

    decoded = cv2.imdecode(np.frombuffer(image.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], grid[0])  # PNG: lossless, RGB kept.
    assert summaries.read_scalars(str(tmp_path)) == {"train/g_loss": [(1, 2.5), (2, 2.0)],
                                                    "eval/l1": [(1, 0.25)]}


def test_reading_takes_tensorflows_files_and_a_torn_last_record(tmp_path):
    """Runs written by TensorFlow's summary writer (a gs:// workdir, older versions) read the
    same; a run killed mid-write keeps what was complete."""
    from clu import metric_writers

    tf_writer = metric_writers.SummaryWriter(str(tmp_path / "tf"))
    tf_writer.write_scalars(3, {"eval/psnr": 21.5, "train/g_l1": 0.125})
    tf_writer.write_scalars(4, {"eval/psnr": 22.0})
    tf_writer.close()
    assert summaries.read_scalars(str(tmp_path / "tf")) == {
        "eval/psnr": [(3, 21.5), (4, 22.0)], "train/g_l1": [(3, 0.125)]}

    writer = summaries.EventFileWriter(str(tmp_path / "ours"))
    writer.write_scalars(1, {"train/g_loss": 1.5})
    writer.write_scalars(2, {"train/g_loss": 1.25})
    writer.close()
    events, = (tmp_path / "ours").glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-7])
    assert summaries.read_scalars(str(tmp_path / "ours")) == {"train/g_loss": [(1, 1.5)]}


def test_only_buckets_go_through_tensorflows_writer(tmp_path, monkeypatch):
    """Only TensorFlow's file layer reaches gs://; a local folder never needs TensorFlow."""
    from clu import metric_writers

    created = []
    monkeypatch.setattr(metric_writers, "SummaryWriter", created.append)
    local = summaries.create_writer(str(tmp_path))
    assert isinstance(local, summaries.EventFileWriter) and not created
    local.close()
    summaries.create_writer("gs://bucket/run")
    assert created == ["gs://bucket/run"]
