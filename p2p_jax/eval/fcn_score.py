"""FCN-score for labels -> photo (pix2pix's Cityscapes evaluation): how well a segmentation
network trained on real photos recovers the input label map from the generated photo.

The network is the user's: a `jax.export` artefact (`eval.fcn_model`) mapping uint8 photos
(N, H, W, 3) to per-pixel class scores (N, H, W, 19) or class ids (N, H, W) over the 19
Cityscapes training classes. Export one from any JAX segmentation model with

    exported = jax.export.export(jax.jit(segment))(
        jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"), jnp.uint8))
    open(path, "wb").write(exported.serialize())

The ground truth is the generator's input label map, read back from its Cityscapes colours,
or its label ids (pix2pixHD's inputs) mapped to train ids.
Scores follow the reference script: per-pixel accuracy, mean per-class accuracy and mean class
IoU from one confusion matrix over all images (classes absent from the truth are left out).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from etils import epath

from p2p_jax.data import cityscapes, images
from p2p_jax.data.cityscapes import IGNORE, LABEL_ID_TO_TRAIN_ID
from p2p_jax.data.cityscapes import NUM_TRAIN_CLASSES as NUM_CLASSES
from p2p_jax.errors import MissingFileError, UserError


def labels_from_colours(label_map: np.ndarray, tolerance: float = 40.0) -> np.ndarray:
    """Train ids of a colour label map by nearest class colour; pixels further than
    `tolerance` from every class colour (void classes, JPEG fringes) are IGNORE."""
    pixels = label_map.reshape(-1, 3).astype(np.int32)
    distances = ((pixels[:, None, :] - cityscapes.TRAIN_COLOURS[None]) ** 2).sum(-1)
    ids = distances.argmin(1)
    ids[distances.min(1) > tolerance**2] = IGNORE
    return ids.reshape(label_map.shape[:2]).astype(np.uint8)


def confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    valid = truth != IGNORE
    return np.bincount(NUM_CLASSES * truth[valid].astype(np.int64) + predicted[valid],
                       minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def scores(matrix: np.ndarray) -> dict[str, float]:
    """The reference's three numbers from a confusion matrix (rows: truth)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class_acc = np.diag(matrix) / matrix.sum(1)
        iou = np.diag(matrix) / (matrix.sum(1) + matrix.sum(0) - np.diag(matrix))
    present = matrix.sum(1) > 0
    return {"fcn_pixel_acc": float(np.diag(matrix).sum() / max(matrix.sum(), 1)),
            "fcn_class_acc": float(np.mean(per_class_acc[present])),
            "fcn_class_iou": float(np.mean(iou[present]))}


class FCNScore:
    """Evaluator: segments the generated photos and compares with the input label maps."""

    def __init__(self, model_path: str):
        if not model_path or not os.path.isfile(model_path):
            raise MissingFileError(
                f"FCN-score needs a segmentation network (eval.fcn_model={model_path!r} not "
                "found): a jax.export artefact of a Cityscapes (19-class) segmenter; see "
                "p2p_jax/eval/fcn_score.py for how to export one")
        try:
            self._model = jax.export.deserialize(bytearray(epath.Path(model_path).read_bytes()))
        except Exception as e:  # Not a jax.export artefact: many error types.
            raise UserError(f"eval.fcn_model={model_path!r} is not a jax.export artefact "
                            f"({type(e).__name__}); see p2p_jax/eval/fcn_score.py") from None

    @classmethod
    def from_config(cls, eval_config, mesh) -> FCNScore:
        del mesh  # The exported network runs on one local device.
        return cls(eval_config.fcn_model)

    def segment(self, photo: np.ndarray) -> np.ndarray:
        photo = jax.device_put(images.to_channels(photo, 3)[None])  # Explicit: the trainer's
        out = jax.device_get(self._model.call(photo))[0]  # loop disallows implicit copies.
        return out.argmax(-1) if out.ndim == 3 else out

    def __call__(self, examples: list[dict], outputs: list[np.ndarray]) -> dict[str, float]:
        matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for example, output in zip(examples, outputs, strict=True):
            matrix += confusion(truth(example["A"]), self.segment(output).astype(np.int64))
        return scores(matrix)


def truth(label_input: np.ndarray) -> np.ndarray:
    """Train ids of the generator's input: a colour label map (pix2pix's Cityscapes), or
    Cityscapes label ids (pix2pixHD's)."""
    if label_input.shape[-1] == 1:
        return LABEL_ID_TO_TRAIN_ID[label_input[..., 0]]
    return labels_from_colours(label_input)
