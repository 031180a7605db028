"""TensorBoard event files written and read without TensorFlow: importing it costs every
training and eval launch ~4 s (CLU's writer is `tf.summary`). The files are TFRecords of
`Event` protos, as TensorBoard reads them; a gs:// workdir goes through CLU's TensorFlow
writer, the one that reaches buckets. Reading takes both (TF2 tensor summaries and ours).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from absl import logging
from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.util import tensor_util


class EventFileWriter:
    """One `events.out.tfevents.*` file in a local folder; every write is flushed, so a
    killed run keeps what it logged."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
                f"{os.getpid()}.v2")
        self._file = open(os.path.join(logdir, name), "ab")  # noqa: SIM115 (closed in close)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))
        self._file.flush()

    def _summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
        self._write(event_pb2.Event(wall_time=time.time(), step=step,
                                    summary=summary_pb2.Summary(value=values)))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self._summary(step, [summary_pb2.Summary.Value(tag=key, simple_value=float(value))
                             for key, value in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        values = []
        for key, batch in images.items():
            batch = np.asarray(batch)
            batch = batch[None] if batch.ndim == 3 else batch
            for index, image in enumerate(batch):
                channels = image.shape[-1]
                png = cv2.imencode(".png", image if channels == 1 else
                                   cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
                tag = key if len(batch) == 1 else f"{key}/{index}"
                values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
                    height=image.shape[0], width=image.shape[1], colorspace=channels,
                    encoded_image_string=png)))
        self._summary(step, values)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """TensorBoard's HParams tab takes booleans, numbers and strings: tuples as text."""
        values = {key: value if isinstance(value, bool | int | float | str) else str(value)
                  for key, value in hparams.items()}
        self._write(event_pb2.Event(wall_time=time.time(),
                                    summary=hparams_summary.hparams_pb(values)))

    def close(self) -> None:
        self._file.close()


def create_writer(logdir: str):
    """Ours for a local folder; CLU's (TensorFlow's, which reaches buckets) for gs://."""
    if "://" in logdir:
        from clu import metric_writers

        return metric_writers.SummaryWriter(logdir)
    return EventFileWriter(logdir)


class Writers:
    """What a run reports to: TensorBoard, optionally W&B; every scalar to the log too at
    `--verbosity=1`."""

    def __init__(self, writers: list):
        self._writers = writers

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        if logging.vlog_is_on(1):
            logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}"
                                                    for k, v in sorted(scalars.items())))
        for writer in self._writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        for writer in self._writers:
            writer.write_images(step, images)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        for writer in self._writers:
            writer.write_hparams(hparams)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def _records(data: bytes):
    """The records of a TFRecord file; a torn last record (a run killed mid-write) ends it."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            return
        yield data[offset + 12:offset + 12 + length]
        offset = end


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] sorted by step, from every event file in `logdir` (ours and
    TensorFlow's alike)."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted(epath.Path(logdir).glob("events.out.tfevents.*")):
        for record in _records(path.read_bytes()):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.dtype.kind != "f":
                        continue
                    number = float(array)
                else:
                    continue
                series.setdefault(value.tag, {})[event.step] = float(number)
    return {tag: sorted(values.items()) for tag, values in series.items()}
