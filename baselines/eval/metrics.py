"""Metrics of TE's two ViT benchmarks, batched in torch (rows = images).

Segmentation (TE `imagenet_seg_eval.py` with `utils/metrices.py`). For one image with min-max normalised map
m in [0, 1] and binary mask g over P = H*W pixels:

    prediction   p = [m > mean(m)]     (a NaN map, i.e. a constant one, predicts background everywhere)
    counts       correct = sum [p = g],  labeled = P,
                 inter_c = sum [p = c][g = c],  union_c = sum [p = c] + sum [g = c] - inter_c   (c = bg, fg)
    AP           sklearn's average precision of the 2P scores (1 - m, m) against the labels (1 - g, g)
                 (background and foreground channels pooled; NaN scores count as 0)
    F1           2 TP / (2 TP + FP + FN) of p against g (0 when there is no positive at all, as sklearn)

Over the dataset, pixel accuracy and IoU are accumulated, not averaged per image (eps = np.spacing(1)):

    pixel accuracy = sum correct / (sum labeled + eps),   IoU_c = sum inter_c / (sum union_c + eps),
    mIoU = (IoU_bg + IoU_fg) / 2,   mAP = mean AP,   mF1 = mean F1.

Perturbation (TE `pertubation_eval_from_hdf5.py`): for the fraction s of removed pixels, the int(P s) pixels with
the highest map value (lowest with `neg`) are set to 0 in all channels of the [0, 1] image.
Curve y = (clean accuracy, accuracy at s = 0.1, ..., 0.9) over x = (0, 0.1, ..., 0.9):

    AUC (TE, maintainer's issues #27/#31) = 100 * trapezoid(y, x)
    AUC (TI)                              = 100 * trapezoid((y, 0), (x, 1))   (sklearn.metrics.auc with (1, 0))

AttnLRP's faithfulness figure (area between perturbation curves, ABPC; Achtibat et al. ICML 2024, after Blücher et
al.): per image, f_LeRF and f_MoRF = the explained class's logit (or probability) along the same x with the least
(LeRF) or most (MoRF) relevant pixels removed first; ABPC = mean over images of trapezoid(f_LeRF - f_MoRF, x).
Higher is better.
"""
import numpy as np
import torch

SEG_FIELDS = ("correct", "labeled", "inter_bg", "inter_fg", "union_bg", "union_fg", "ap", "f1")
PERTURBATION_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def average_precision(scores, labels):
    """Average precision per row, as sklearn's `average_precision_score`.

    AP = sum_k (R_k - R_{k-1}) P_k over the distinct scores t_k in decreasing order, where P_k and R_k are the
    precision and recall of {score >= t_k}. Equivalently AP = (1 / #pos) sum_{positive i} P_{k(i)} with k(i) the
    tie group of sample i. scores: float [B, n]; labels: bool [B, n]. Returns float64 [B] (NaN without positives).
    """
    scores, labels = float64_capable(scores, labels)
    sorted_scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
    positive = labels.gather(1, order).double()
    n = scores.shape[1]
    position = torch.arange(n, device=scores.device).expand_as(order)
    group_end = torch.ones_like(order, dtype=torch.bool)
    group_end[:, :-1] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    end = torch.where(group_end, position, torch.full_like(position, n))
    end = torch.flip(torch.cummin(torch.flip(end, [1]), dim=1).values, [1])
    precision = positive.cumsum(1) / (position + 1).double()
    return (positive * precision.gather(1, end)).sum(1) / positive.sum(1)


def float64_capable(*tensors):
    """The tensors, moved to the CPU from a device without float64 (MPS)."""
    return tuple(t.cpu() if t.device.type == "mps" else t for t in tensors)


def segmentation_rows(maps, masks):
    """Per-image segmentation counts and scores, columns `SEG_FIELDS` (float64 numpy [B, 8]).

    maps: normalised maps [B, 1, H, W] (NaN allowed); masks: {0, 1} masks [B, H, W].
    """
    maps, masks = float64_capable(maps, masks)
    m = maps.flatten(1).float()
    g = masks.flatten(1).to(m.device).bool()
    p = m > m.mean(1, keepdim=True)
    fg_inter = (p & g).sum(1)
    bg_inter = (~p & ~g).sum(1)
    pred_fg, label_fg = p.sum(1), g.sum(1)
    size = m.shape[1]
    union_fg = pred_fg + label_fg - fg_inter
    union_bg = (size - pred_fg) + (size - label_fg) - bg_inter
    valid = ~torch.isnan(m)
    scores = torch.cat([torch.where(valid, 1 - m, 0.0), torch.where(valid, m, 0.0)], 1)
    ap = torch.nan_to_num(average_precision(scores, torch.cat([~g, g], 1)))
    f1_denominator = (pred_fg + label_fg).double()
    f1 = torch.where(f1_denominator > 0, 2 * fg_inter / f1_denominator.clamp(min=1), 0.0)
    columns = [fg_inter + bg_inter, torch.full_like(fg_inter, size), bg_inter, fg_inter, union_bg, union_fg, ap, f1]
    return torch.stack([c.double() for c in columns], 1).cpu().numpy()


def segmentation_summary(rows):
    """Dataset scores from per-image rows (`segmentation_rows`): accumulated pixel accuracy and IoU, mean AP, F1."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(SEG_FIELDS))
    total = dict(zip(SEG_FIELDS, rows.sum(0)))
    eps = np.spacing(1)
    iou = np.array([total["inter_bg"], total["inter_fg"]]) / (np.array([total["union_bg"], total["union_fg"]]) + eps)
    return {
        "pixel_accuracy": float(total["correct"] / (total["labeled"] + eps)),
        "mean_iou": float(iou.mean()),
        "iou_background": float(iou[0]),
        "iou_foreground": float(iou[1]),
        "mean_ap": float(rows[:, SEG_FIELDS.index("ap")].mean()) if len(rows) else float("nan"),
        "mean_f1": float(rows[:, SEG_FIELDS.index("f1")].mean()) if len(rows) else float("nan"),
        "num_images": int(len(rows)),
    }


def removal_counts(num_pixels, steps=PERTURBATION_STEPS):
    """Pixels removed at each step: int(num_pixels * s), as TE (50176 pixels: 5017, 10035, ...)."""
    return [int(num_pixels * s) for s in steps]


def kept_pixels(vis, neg=False, steps=PERTURBATION_STEPS):
    """Which pixels survive each step: bool [S, B, 1, H, W] for maps vis [B, 1, H, W] (or [B, H, W]).

    The pixels are ranked once by descending score (score = -vis with `neg`; ties by pixel index, NaN as 0);
    step s removes the pixels of rank < int(H W s), so the removed sets are nested.
    """
    batch, height, width = vis.shape[0], vis.shape[-2], vis.shape[-1]
    score = torch.nan_to_num(vis.reshape(batch, height * width).float())
    if neg:
        score = -score
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(height * width, device=order.device).expand_as(order))
    counts = torch.tensor(removal_counts(height * width, steps), device=rank.device)
    return (rank.unsqueeze(0) >= counts.view(-1, 1, 1)).view(len(steps), batch, 1, height, width)


def perturb(images, vis, neg=False, steps=PERTURBATION_STEPS):
    """All perturbed copies of a batch of [0, 1] images [B, C, H, W]: [S, B, C, H, W], removed pixels set to 0 in
    every channel (`kept_pixels` says which)."""
    return images.unsqueeze(0) * kept_pixels(vis, neg, steps).to(images.dtype)


def auc_te(accuracies, steps=PERTURBATION_STEPS):
    """TE's AUC in percent: 100 * trapezoid(y, x), y = (clean, step accuracies), x = (0, steps)."""
    return float(np.trapezoid(np.asarray(accuracies, dtype=np.float64), [0.0, *steps]) * 100)


def auc_ti(accuracies, steps=PERTURBATION_STEPS):
    """TI's AUC in percent: the same curve with the end point (1, 0) appended (sklearn.metrics.auc)."""
    return float(np.trapezoid([*np.asarray(accuracies, dtype=np.float64), 0.0], [0.0, *steps, 1.0]) * 100)


def perturbation_summary(hits, prob_drop, logit_drop, steps=PERTURBATION_STEPS):
    """Curve and AUCs from per-image rows.

    hits: {0, 1} [N, 1 + S] (column 0 = clean prediction correct); prob_drop, logit_drop: [N, S] with
    drop = max_c p_clean - max_c p_step (TE stores the opposite sign as `prob_diff_pertub`), likewise for logits.
    """
    hits = np.asarray(hits, dtype=np.float64)
    accuracy = hits.mean(0)
    return {
        "steps": [0.0, *steps],
        "accuracy": accuracy.tolist(),
        "auc": auc_te(accuracy, steps),
        "auc_ti": auc_ti(accuracy, steps),
        "prob_drop": np.asarray(prob_drop, dtype=np.float64).mean(0).tolist(),
        "logit_drop": np.asarray(logit_drop, dtype=np.float64).mean(0).tolist(),
        "num_images": int(hits.shape[0]),
    }


CLEAN_AND_STEPS = (0.0, *PERTURBATION_STEPS)


def area_between_curves(lerf, morf, x=CLEAN_AND_STEPS):
    """ABPC: mean over samples of ``trapezoid(lerf - morf, x)``; ``lerf``, ``morf``: ``[N, len(x)]`` scores of the
    explained class (for images, column 0 = the clean image at x = 0)."""
    gap = np.asarray(lerf, dtype=np.float64) - np.asarray(morf, dtype=np.float64)
    return float(np.trapezoid(gap, list(x), axis=1).mean()) if len(gap) else float("nan")


def abpc_summary(morf_logit, lerf_logit, morf_prob, lerf_prob, x=CLEAN_AND_STEPS):
    """ABPC of the logit and of the probability, and the mean curves (all ``[N, len(x)]``)."""
    mean = [np.asarray(c, dtype=np.float64).mean(0).tolist() for c in (morf_logit, lerf_logit, morf_prob, lerf_prob)]
    return {"abpc_logit": area_between_curves(lerf_logit, morf_logit, x),
            "abpc_prob": area_between_curves(lerf_prob, morf_prob, x),
            "morf_logit": mean[0], "lerf_logit": mean[1], "morf_prob": mean[2], "lerf_prob": mean[3]}
