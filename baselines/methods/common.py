"""Pieces every method shares: the target class, recorded forwards with attention gradients, rollout products.

Notation: ``A_b`` = softmax attention of block ``b`` (B x H x N x N), ``G_b`` = gradient of the target class's
logit (not its probability) with respect to ``A_b``; each sample's query row is ``model.query_rows(inputs)``
(row 0, the CLS token, for a ViT or BERT).
"""
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from baselines.cli import UserError


def target_classes(logits, class_index):
    """The class to explain per sample: the predicted top class, or ``class_index`` (an int or ``[B]``)."""
    if class_index is None:
        return logits.argmax(dim=-1)
    target = torch.as_tensor(class_index, device=logits.device).long().expand(logits.shape[0])
    if (target < 0).any() or (target >= logits.shape[-1]).any():
        raise UserError(f"class index {target.tolist()} out of range for a model with {logits.shape[-1]} classes")
    return target.clone()


def target_logit(logits, target):
    """``sum_b logits[b, target_b]``: one backward gives every sample's own gradients."""
    return logits.gather(1, target[:, None]).sum()


def one_hot(logits, target):
    """The LRP seed: 1 at the target class (not scaled by the logit)."""
    return F.one_hot(target, logits.shape[-1]).to(logits.dtype)


@contextmanager
def full_precision():
    """float32 computed as float32 on a GPU: TF32 off for cuBLAS matmuls and cuDNN convolutions (the patch
    embedding) inside the block, the caller's settings restored after. TF32 keeps 10 mantissa bits, and the LRP
    rules' divisions amplify that rounding into the relevance."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


HALF_TYPES = (torch.float16, torch.bfloat16)


def check_precision(model, method, needs):
    """Relevance rules on a float16/bfloat16 model are refused: their divisions by sums of contributions turn
    half-precision rounding (3 significant digits) into noise in the relevance."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if needs == "relevance" and dtype in HALF_TYPES:
        raise UserError(f"method '{method}' propagates LRP relevance, which {dtype} rounding corrupts; "
                         "convert the model with model.float() first")


@contextmanager
def recorded(model, inputs, with_grad, first_block=0, fused_before=True, **forward_options):
    """Run a recorded forward; yields ``(logits, attention maps)``, ``None`` for the blocks before
    ``first_block`` (not recorded: they run the fused kernel unless ``fused_before`` is False, see
    ``AttentionModel.record``). Weights never receive gradients."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with model.record(first_block, fused_before), torch.set_grad_enabled(with_grad):
            logits = model(inputs, **forward_options)
            cores = model.attention_cores
            yield logits, [None] * first_block + [core.attn for core in cores[first_block:]]
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def batch_size(inputs):
    """Samples in a batch: a tensor, or a dict of tensors (e.g. ``input_ids`` and ``attention_mask``)."""
    return next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]


def valid_tokens(model, inputs):
    """``[B, N]`` bool: the tokens that belong to each sample (a text model's attention mask), or None when every
    token does (images). Padding must not change a sample's explanation."""
    mask = getattr(model, "valid_tokens", None)
    return None if mask is None else mask(inputs)


def valid_pairs(valid):
    """``[B, 1, N, N]`` bool: attention entries whose query and key both belong to the sample."""
    return (valid[:, :, None] & valid[:, None, :]).unsqueeze(1)


def map_batch(inputs, fn):
    """Apply ``fn`` to the batch tensor(s) of ``inputs``."""
    return {k: fn(v) for k, v in inputs.items()} if isinstance(inputs, dict) else fn(inputs)


def gradients(logits, target, maps):
    """``G`` for each of ``maps``: gradients of the target logits."""
    return list(torch.autograd.grad(target_logit(logits, target), maps))


def attention_gradients(model, inputs, class_index, first_block):
    """One recorded forward and backward: ``(target, maps, grads)`` with the (detached) attention maps of blocks
    ``>= first_block`` and the target logits' gradients with respect to them."""
    with recorded(model, inputs, with_grad=True, first_block=first_block) as (logits, maps):
        target = target_classes(logits, class_index)
        grads = gradients(logits, target, maps[first_block:])
    return target, [attn.detach() for attn in maps[first_block:]], grads


def eye_like(matrix):
    return torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)


def query_row(matrix, rows):
    """Row ``rows[b]`` of each sample's matrix: ``[B, ..., N, N]`` -> ``[B, ..., N]``. Float ``rows`` ``[B, N]``
    are weights over the rows instead: ``sum_i rows[b, i] matrix[b, ..., i, :]`` (an average-pooled model)."""
    if rows.is_floating_point():
        weights = rows.to(matrix.dtype).view(rows.shape[0], *[1] * (matrix.dim() - 3), 1, rows.shape[-1])
        return (weights @ matrix).squeeze(-2)
    index = rows.view(-1, *[1] * (matrix.dim() - 2), 1).expand(*matrix.shape[:-2], 1, matrix.shape[-1])
    return matrix.gather(-2, index).squeeze(-2)


def rollout_row(matrices, rows):
    """Row ``rows[b]`` of each sample's ``M_last @ ... @ M_first`` (later blocks on the left), as vector-matrix
    products."""
    result = query_row(matrices[-1], rows)
    for matrix in reversed(matrices[:-1]):
        result = torch.bmm(result.unsqueeze(1), matrix).squeeze(1)
    return result


def row_normalise(matrix):
    return matrix / matrix.sum(dim=-1, keepdim=True)


def pixel_maps(raw, patch_size, pixel_level=False):
    """Raw maps ``[B, h, w]`` -> ``[B, 1, h * patch_size, w * patch_size]``: bilinear upsampling (skipped for
    ``pixel_level`` maps such as ``full_lrp``'s), then per-image min-max normalisation to [0, 1]."""
    maps = raw.float().unsqueeze(1)
    if not pixel_level:
        maps = F.interpolate(maps, scale_factor=patch_size, mode="bilinear", align_corners=False)
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    high = maps.amax(dim=(1, 2, 3), keepdim=True)
    return torch.nan_to_num((maps - low) / (high - low))


def input_maps(raw, inputs, pixel_level=False):
    """Raw maps shaped like the inputs, as Captum's attributions: an image's ``[B, h, w]`` patch map upsampled
    bilinearly to ``[B, 1, H, W]`` (broadcasts against ``[B, C, H, W]``; a ``pixel_level`` map is already at the
    image's size), a text's ``[B, L]`` unchanged (one score per token); not normalised."""
    if isinstance(inputs, dict):
        return raw
    maps = raw.unsqueeze(1)
    if not pixel_level:
        maps = F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return maps
