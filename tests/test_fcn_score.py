"""FCN-score: colour labels to train ids, the confusion-matrix scores, a user-exported network."""

import numpy as np
import pytest

from p2p_jax.data import cityscapes
from p2p_jax.eval import fcn_score
from tests.helpers import write_segmenter

ROAD, SKY, CAR = 0, 10, 13


def paint(ids):
    return cityscapes.TRAIN_COLOURS[ids].astype(np.uint8)


def test_labels_from_colours_maps_and_ignores():
    label_map = paint(np.array([[ROAD, SKY], [CAR, CAR]]))
    label_map[1, 1] = (0, 0, 0)  # void: far from every class colour
    label_map[0, 1] += np.array([10, 5, 0], np.uint8)  # a JPEG fringe, still sky
    np.testing.assert_array_equal(fcn_score.labels_from_colours(label_map),
                                  [[ROAD, SKY], [CAR, fcn_score.IGNORE]])


def test_scores_from_a_hand_built_case(tmp_path):
    evaluator = fcn_score.FCNScore(write_segmenter(tmp_path / "segmenter.jax"))

    truth = np.zeros((4, 4), np.int64)
    truth[:2] = SKY  # 8 sky, 8 road pixels
    generated = truth.copy()
    generated[2, :] = CAR  # 4 road pixels come out as car
    got = evaluator([{"A": paint(truth)}], [paint(generated)])
    # pixel acc 12/16; class acc: sky 8/8, road 4/8 -> 0.75; IoU: sky 1, road 4/8 -> 0.75.
    # car is absent from the truth, so it is left out of the class means.
    assert got == pytest.approx({"fcn_pixel_acc": 0.75, "fcn_class_acc": 0.75,
                                 "fcn_class_iou": 0.75})
    perfect = evaluator([{"A": paint(truth)}], [paint(truth)])
    assert perfect == pytest.approx({"fcn_pixel_acc": 1, "fcn_class_acc": 1,
                                     "fcn_class_iou": 1})
    with pytest.raises(FileNotFoundError, match="eval.fcn_model='nowhere' not found"):
        fcn_score.FCNScore("nowhere")


def test_training_reports_the_configured_evaluators(tiny_config, tmp_path, devices):
    from p2p_jax.eval import summaries
    from p2p_jax.train import loop as trainer

    tiny_config.num_train_steps = 3
    tiny_config.eval.evaluators = ("fcn",)
    tiny_config.eval.fcn_model = write_segmenter(tmp_path / "segmenter.jax")
    trainer.train_and_evaluate(tiny_config, str(tmp_path / "run"), devices[:1])
    series = summaries.read_scalars(str(tmp_path / "run"))
    assert [step for step, _ in series["eval/fcn_class_iou"]] == [3]
    assert 0 <= series["eval/fcn_pixel_acc"][0][1] <= 1
    tiny_config.eval.evaluators = ("inception",)  # No weights file: stops before training.
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path / "no_weights"), devices[:1])
    assert not (tmp_path / "no_weights" / "checkpoints").exists()
