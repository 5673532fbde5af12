import torch

from ml.metrics import expected_calibration_error, summarize


def test_a_rejected_photo_counts_wrong_for_accuracy_and_recall_but_not_for_precision() -> None:
    targets = torch.tensor([0, 0, 1, 1])
    predictions = torch.tensor([0, -1, 1, 0])
    report = summarize(targets, predictions, ["a", "b"])
    assert report["accuracy"] == 0.5
    assert report["confusion_matrix"]["columns"] == ["a", "b", "rejected"]
    assert report["confusion_matrix"]["counts"] == [[1, 0, 1], [1, 1, 0]]
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert report["macro_f1"] == round((0.5 + 2 / 3) / 2, 4)


def test_expected_calibration_error() -> None:
    confident_and_right = expected_calibration_error(torch.tensor([0.95, 0.95]), torch.tensor([True, True]))
    assert abs(confident_and_right - 0.05) < 1e-6
    overconfident = expected_calibration_error(torch.tensor([0.9, 0.9]), torch.tensor([False, False]))
    assert abs(overconfident - 0.9) < 1e-6
    assert expected_calibration_error(torch.tensor([]), torch.tensor([], dtype=torch.bool)) == 0.0
