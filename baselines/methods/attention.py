"""Methods built from attention maps and their gradients alone (no LRP).

Each returns each sample's query row (``model.query_rows``: the CLS row of a ViT) over all tokens, ``[B, N]``,
before any normalisation.
"""
import torch

from baselines.cli import UserError

from .common import (attention_gradients, eye_like, query_row, recorded, rollout_row, row_normalise, valid_pairs,
                     valid_tokens)


def fuse_heads(attn, head_fusion):
    """``mean`` / ``min`` / ``max`` over the heads of ``B x H x N x N`` maps."""
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    if head_fusion == "min":
        return attn.amin(dim=1)
    raise UserError(f"unknown head fusion '{head_fusion}' (mean, min, max)")


def discard_lowest(fused, ratio, keep_first=True, valid=None):
    """vit-explain's discard: zero the ``int(N^2 * ratio)`` smallest entries of each sample's map (every sample
    of the batch, not only the first); with ``keep_first`` the CLS->CLS entry is never zeroed. With ``valid``
    (``[B, N]`` bool, text padding) a sample of ``n`` tokens ranks only its own ``n x n`` entries and loses
    ``int(n^2 * ratio)`` of them."""
    if valid is None:
        counts = [int(fused[0].numel() * ratio)] * fused.shape[0]
    else:
        counts = [int(n * n * ratio) for n in valid.sum(dim=1).tolist()]
    most = max(counts)
    if most == 0:
        return fused
    flat = fused.flatten(1)
    first = flat[:, 0].clone()
    ranked = flat if valid is None else flat.masked_fill(~valid_pairs(valid).flatten(1), float("inf"))
    lowest = ranked.topk(most, dim=-1, largest=False).indices
    drop = torch.arange(most, device=flat.device) < torch.tensor(counts, device=flat.device)[:, None]
    flat = flat.scatter(1, lowest, flat.gather(1, lowest).masked_fill(drop, 0.0))
    if keep_first:
        flat[:, 0] = first
    return flat.view_as(fused)


def attn_last_layer(model, inputs, class_index=None):
    """Raw attention: ``mean_h clamp(A_last, 0)[query row]``. Class-agnostic."""
    with recorded(model, inputs, with_grad=False, first_block=len(model.attention_cores) - 1) as (_, maps):
        return query_row(maps[-1].clamp(min=0).mean(dim=1), model.query_rows(inputs))


def rollout(model, inputs, class_index=None, start_layer=1, head_fusion="mean", discard_ratio=0.0):
    """Attention rollout (Abnar & Zuidema; TE baseline, vit-explain options). Class-agnostic.

    ``F_b = fuse_h(A_b)`` with the lowest ``discard_ratio`` entries zeroed (CLS->CLS kept);
    ``M_b = (F_b + I) / rowsum(F_b + I)``; result = the query row of ``M_{L-1} ... M_s``, ``s = start_layer``.
    """
    valid = valid_tokens(model, inputs)
    with recorded(model, inputs, with_grad=False, first_block=start_layer) as (_, maps):
        matrices = []
        for attn in maps[start_layer:]:
            fused = discard_lowest(fuse_heads(attn, head_fusion), discard_ratio, valid=valid)
            matrices.append(row_normalise(fused + eye_like(fused)))
        return rollout_row(matrices, model.query_rows(inputs))


def grad_rollout(model, inputs, class_index=None, start_layer=0, discard_ratio=0.9):
    """Gradient rollout (vit-explain), with its bugs fixed (row normalisation keeps dims, each block's gradient
    is paired with its own attention, discard applies to every sample):

    ``F_b = max(mean_h(A_b * G_b), 0)``, lowest ``discard_ratio`` entries zeroed;
    ``M_b = (F_b + I) / rowsum(F_b + I)``; result = the query row of ``M_{L-1} ... M_s``.
    ``G_b`` is the gradient with respect to the attention probabilities, as vit-explain describes it.
    """
    _, maps, grads = attention_gradients(model, inputs, class_index, start_layer)
    valid = valid_tokens(model, inputs)
    matrices = []
    for attn, grad in zip(maps, grads):
        fused = discard_lowest((attn * grad).mean(dim=1).clamp(min=0), discard_ratio, keep_first=False,
                               valid=valid)
        matrices.append(row_normalise(fused + eye_like(fused)))
    return rollout_row(matrices, model.query_rows(inputs))


def attn_gradcam(model, inputs, class_index=None, gradcam_weights="row"):
    """Grad-CAM on the last attention map: ``cam = clamp(mean_h(w_h * A_h), 0)``, the query row.

    ``row`` (TE ViT): ``w_h`` = mean of ``G_h`` over the query row's image tokens (a padded text's own tokens); the
    raw row (TE's final min-max of the row is the caller's map normalisation). ``matrix`` (TE BERT): ``w_h`` = mean
    of ``G_h`` over the whole matrix, and the row is min-max normalised with the whole matrix's extremes,
    ``(cam[q] - min cam) / (max cam - min cam)``, as TE's BERT code returns it (a padded text's own ``n x n``
    entries; a constant matrix gives zeros).
    """
    _, (attn,), (grad,) = attention_gradients(model, inputs, class_index, len(model.attention_cores) - 1)
    valid = valid_tokens(model, inputs)
    rows = model.query_rows(inputs)
    if gradcam_weights == "row":
        row = query_row(grad, rows)[:, :, model.image_tokens]
        if valid is None:
            weights = row.mean(dim=-1, keepdim=True)
        else:
            keep = valid[:, None, model.image_tokens].to(row.dtype)
            weights = (row * keep).sum(dim=-1, keepdim=True) / keep.sum(dim=-1, keepdim=True)
        return (query_row(attn, rows) * weights).mean(dim=1).clamp(min=0)
    pairs = torch.ones_like(attn[:, :1], dtype=torch.bool) if valid is None else valid_pairs(valid)
    weights = (grad * pairs).sum(dim=(2, 3)) / pairs.sum(dim=(2, 3))
    cam = (attn * weights[..., None, None]).mean(dim=1, keepdim=True).clamp(min=0)
    low = cam.masked_fill(~pairs, float("inf")).amin(dim=(1, 2, 3))[:, None]
    high = cam.masked_fill(~pairs, float("-inf")).amax(dim=(1, 2, 3))[:, None]
    row = query_row(cam, rows)[:, 0]
    span = high - low
    normalised = torch.where(span > 0, (row - low) / span.clamp(min=torch.finfo(row.dtype).tiny), 0.0)
    return normalised if valid is None else normalised * valid


def generic_attribution(model, inputs, class_index=None, start_layer=0):
    """Generic attention relevance (Chefer et al., ICCV 2021, no LRP):

    ``R = I``; for each block ``b >= start_layer``: ``R = R + mean_h clamp(G_b * A_b, 0) R``; result = the query row.
    """
    _, maps, grads = attention_gradients(model, inputs, class_index, start_layer)
    matrices = []
    for attn, grad in zip(maps, grads):
        cam = (grad * attn).clamp(min=0).mean(dim=1)
        matrices.append(cam + eye_like(cam))
    return rollout_row(matrices, model.query_rows(inputs))


__all__ = ["attn_last_layer", "rollout", "grad_rollout", "attn_gradcam", "generic_attribution"]
