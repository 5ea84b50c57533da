from __future__ import annotations

import numpy as np
import pytest

from geoseg.evaluation.metrics import confusion_matrix, scores


def test_hand_computed_confusion_and_scores() -> None:
    reference = np.array([[1, 1, 2, 2], [1, 0, 2, 3]])
    prediction = np.array([[1, 2, 2, 2], [1, 1, 0, 3]])
    matrix = confusion_matrix(reference, prediction, [1, 2, 3, 4])
    # rows: reference 1, 2, 3, 4; columns: predicted 1, 2, 3, 4, other (nodata)
    expected = np.array([[2, 1, 0, 0, 0], [0, 2, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(matrix, expected)  # the reference-0 pixel is ignored
    result = scores(matrix, [1, 2, 3, 4])
    by_code = {c.code: c for c in result.classes}
    assert by_code[1].iou == pytest.approx(2 / 3)  # tp 2, fn 1, fp 0
    assert by_code[2].iou == pytest.approx(2 / 4)  # tp 2, fn 1 (nodata), fp 1
    assert by_code[3].iou == 1.0
    assert by_code[4].iou is None and by_code[4].precision is None, "absent class is not 0 or 1"
    assert by_code[2].precision == pytest.approx(2 / 3) and by_code[2].recall == pytest.approx(
        2 / 3
    )
    assert result.miou == pytest.approx((2 / 3 + 1 / 2 + 1) / 3), "mean over classes present"
    assert result.overall_accuracy == pytest.approx(5 / 7)


def test_class_predicted_but_absent_from_reference_scores_zero_but_not_in_miou() -> None:
    reference = np.array([1, 1, 1, 1])
    prediction = np.array([1, 1, 5, 5])
    result = scores(confusion_matrix(reference, prediction, [1, 5]), [1, 5])
    by_code = {c.code: c for c in result.classes}
    assert by_code[5].iou == 0.0 and by_code[5].support == 0 and by_code[5].predicted == 2
    assert result.miou == pytest.approx(0.5)  # only class 1 is in the reference


def test_ignored_and_sparse_labels() -> None:
    reference = np.zeros((10, 10), dtype=np.uint8)
    reference[0, :3] = 2  # sparse: three labelled pixels
    reference[5, 5] = 9  # a code outside the evaluated classes is ignored
    prediction = np.full((10, 10), 2, dtype=np.uint8)
    result = scores(confusion_matrix(reference, prediction, [2, 3]), [2, 3])
    assert result.matrix.sum() == 3 and result.miou == 1.0 and result.overall_accuracy == 1.0
    assert result.as_dict({2: "tree"})["per_class"]["tree"]["support_px"] == 3
