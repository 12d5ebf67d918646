"""Metrics of the ViT benchmarks against hand-computed and scikit-learn values."""

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, f1_score

from baselines.eval import metrics



def te_reference(maps, masks):
    """TE's `utils/metrices.py` path for one image at a time, in numpy + sklearn (histograms as TE)."""
    rows = []
    for m, g in zip(maps, masks):
        m = m.reshape(-1).astype(np.float32)
        g = g.reshape(-1).astype(np.int64)
        pred = (m > m.mean()).astype(np.int64)
        predict, target = pred + 1, g + 1
        correct = np.sum((predict == target) * (target > 0))
        labeled = np.sum(target > 0)
        intersection = predict * (predict == target)
        inter, _ = np.histogram(intersection, bins=2, range=(1, 2))
        area_pred, _ = np.histogram(predict, bins=2, range=(1, 2))
        area_lab, _ = np.histogram(target, bins=2, range=(1, 2))
        union = area_pred + area_lab - inter
        ap = average_precision_score(np.concatenate([1 - g, g]), np.concatenate([1 - m, m]))
        f1 = f1_score(g, pred, zero_division=0)
        rows.append([correct, labeled, inter[0], inter[1], union[0], union[1], ap, f1])
    return np.array(rows, dtype=np.float64)


def test_average_precision_matches_sklearn_with_ties():
    gen = np.random.default_rng(0)
    scores = np.round(gen.random((5, 200)), 1).astype(np.float32)
    labels = gen.random((5, 200)) < 0.3
    ours = metrics.average_precision(torch.from_numpy(scores), torch.from_numpy(labels)).numpy()
    expected = [average_precision_score(y, s) for s, y in zip(scores, labels)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_segmentation_rows_hand_values():
    m = torch.tensor([[0.0, 0.2], [0.9, 1.0]]).view(1, 1, 2, 2)
    g = torch.tensor([[0, 1], [1, 1]]).view(1, 2, 2)
    row = metrics.segmentation_rows(m, g)[0]
    # mean 0.525 -> p = [0, 0, 1, 1]; g = [0, 1, 1, 1]
    correct, labeled, inter_bg, inter_fg, union_bg, union_fg, ap, f1 = row
    assert (correct, labeled, inter_bg, inter_fg, union_bg, union_fg) == (3, 4, 1, 2, 2, 3)
    assert f1 == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    # scores (1-m, m) = (1, .8, .1, 0, 0, .2, .9, 1) vs labels (1, 0, 0, 0, 0, 1, 1, 1)
    # ranked: 1,1 (2 pos) -> P=1; .9 pos -> P=1; .8 neg; .2 pos -> P=4/5; .1, 0, 0 neg
    assert ap == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)


def test_segmentation_rows_match_te_reference():
    gen = np.random.default_rng(1)
    maps = gen.random((4, 1, 8, 8)).astype(np.float32)
    masks = (gen.random((4, 8, 8)) < 0.4).astype(np.int64)
    masks[3] = 0
    ours = metrics.segmentation_rows(torch.from_numpy(maps), torch.from_numpy(masks))
    np.testing.assert_allclose(ours, te_reference(maps, masks), rtol=1e-12)


def test_nan_map_predicts_background():
    maps = torch.full((1, 1, 2, 2), float("nan"))
    masks = torch.tensor([[[0, 1], [1, 1]]])
    row = dict(zip(metrics.SEG_FIELDS, metrics.segmentation_rows(maps, masks)[0]))
    assert row["correct"] == 1 and row["inter_fg"] == 0 and row["f1"] == 0
    assert row["ap"] == pytest.approx(0.5)  # all scores 0: precision = positives / all = 4 / 8


def test_summary_accumulates_over_dataset():
    small = metrics.segmentation_rows(torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[1, 1]]]))
    big = metrics.segmentation_rows(torch.arange(6.0).view(1, 1, 2, 3) / 5, torch.tensor([[[0, 0, 0], [1, 1, 1]]]))
    summary = metrics.segmentation_summary(np.concatenate([small, big]))
    # small: p = (0, 1), g = (1, 1): 1 of 2 correct; inter bg 0, fg 1; union bg 1, fg 2
    # big: mean .5 -> p = (0,0,0,1,1,1) = g: 6 of 6; inter bg 3, fg 3; union bg 3, fg 3
    assert summary["pixel_accuracy"] == pytest.approx(7 / 8)
    assert summary["pixel_accuracy"] != pytest.approx((1 / 2 + 1) / 2)
    assert summary["iou_background"] == pytest.approx(3 / 4)
    assert summary["iou_foreground"] == pytest.approx(4 / 5)
    assert summary["mean_iou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    per_image_miou = ((0 / 1 + 1 / 2) / 2 + 1) / 2
    assert summary["mean_iou"] != pytest.approx(per_image_miou)
    assert summary["mean_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["num_images"] == 2


def test_perturb_removes_top_pixels_nested():
    images = torch.ones(1, 3, 2, 5)
    vis = torch.tensor([[0.5, 0.1, 0.9, 0.3, 0.7, 0.0, 0.2, 0.8, 0.4, 0.6]]).view(1, 1, 2, 5)
    out = metrics.perturb(images, vis, steps=(0.1, 0.3, 0.5))
    assert out.shape == (3, 1, 3, 2, 5)
    removed = [set(torch.nonzero(o[0, 0].flatten() == 0).flatten().tolist()) for o in out]
    assert removed == [{2}, {2, 7, 4}, {2, 7, 4, 9, 0}]
    assert torch.equal(out[:, :, 0], out[:, :, 2])
    neg = metrics.perturb(images, vis, neg=True, steps=(0.3,))
    assert set(torch.nonzero(neg[0, 0, 0].flatten() == 0).flatten().tolist()) == {5, 1, 6}


def test_removal_counts_te():
    assert metrics.removal_counts(224 * 224)[:3] == [5017, 10035, 15052]


def test_auc_conventions():
    y = [0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.25, 0.2, 0.1]
    x = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    hand = sum((y[i] + y[i + 1]) / 2 * 0.1 for i in range(9)) * 100
    assert metrics.auc_te(y) == pytest.approx(hand)
    assert metrics.auc_ti(y) == pytest.approx(auc(x + [1], y + [0]) * 100)
    assert metrics.auc_ti(y) == pytest.approx(hand + 0.1 * 0.1 / 2 * 100)


def test_perturbation_summary():
    hits = np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]])
    summary = metrics.perturbation_summary(hits, np.ones((2, 9)), np.zeros((2, 9)))
    assert summary["accuracy"][:3] == [1.0, 1.0, 0.5]
    assert summary["auc"] == pytest.approx(metrics.auc_te(hits.mean(0)))
    assert summary["prob_drop"] == [1.0] * 9 and summary["num_images"] == 2
