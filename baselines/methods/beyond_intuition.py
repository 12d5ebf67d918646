"""Beyond Intuition (Chen et al., TMLR 2022): head-wise and token-wise attribution, weighted by integrated
gradients of the last attention map."""
import torch

from .common import (attention_gradients, batch_size, eye_like, gradients, map_batch, query_row, recorded, rollout_row,
                     target_classes, valid_pairs, valid_tokens)

IG_MEMORY_BUDGET = 2 ** 30
"""Bytes that one forward of the integrated-gradient loop may use (Captum's ``internal_batch_size`` idea: bounds
memory; results do not depend on it)."""

ATTENTION_COPIES = 8
"""Working memory of one scaled input, in attention maps: scores, probabilities, their gradients and the
block's activations (generous for short sequences, where the hidden states weigh as much as the maps)."""


def ig_chunk_size(map_shape, dtype):
    """Scaled inputs per forward: ``IG_MEMORY_BUDGET // (ATTENTION_COPIES * H * N * N * itemsize)``, at least 1
    (``map_shape`` = one sample's attention map, ``H x N x N``)."""
    per_input = ATTENTION_COPIES * map_shape.numel() * torch.empty((), dtype=dtype).element_size()
    return max(1, IG_MEMORY_BUDGET // per_input)


def integrated_attention_gradient(model, inputs, target, steps, map_shape):
    """``W = mean_h clamp(mean_alpha G_last(alpha x), 0)`` (query row, ``[B, N]``), ``alpha`` in
    ``linspace(0, 1, steps)``; the path scales what the model's ``input_scale`` scales (a ViT's normalised image,
    a BERT's embedding output). Scaled inputs run in chunks that fit ``IG_MEMORY_BUDGET`` (``map_shape``: one
    sample's attention map)."""
    count = batch_size(inputs)
    dtype = next(model.parameters()).dtype
    chunk_size = ig_chunk_size(map_shape, dtype)
    alphas = torch.linspace(0, 1, steps, dtype=dtype, device=target.device)
    repeated = map_batch(inputs, lambda t: t.repeat_interleave(steps, dim=0))
    scales = alphas.repeat(count)
    targets = target.repeat_interleave(steps)
    query = model.query_rows(inputs).repeat_interleave(steps, dim=0)
    rows, last = [], len(model.attention_cores) - 1
    for start in range(0, count * steps, chunk_size):
        chunk = slice(start, start + chunk_size)
        with recorded(model, map_batch(repeated, lambda t: t[chunk]), with_grad=True, first_block=last,
                      input_scale=scales[chunk]) as (logits, maps):
            (grad,) = gradients(logits, targets[chunk], maps[-1:])
        rows.append(query_row(grad, query[chunk]))
    total = torch.cat(rows).view(count, steps, *rows[0].shape[1:]).sum(dim=1)
    return (total / steps).clamp(min=0).mean(dim=1)


def beyond_intuition_h(model, inputs, class_index=None, start_layer=3, steps=20):
    """Head-wise token attribution (TI "Ours-H"):

    per block ``b >= start_layer``: ``I_h = mean_ij |A_h^T G_h|`` (``G`` of padded tokens set to 0), normalised
    to sum 1 over the heads;
    ``Abar_b = sum_h I_h A_h``; ``R = prod_b (I + Abar_b)`` (later blocks on the left);
    result = ``W[query row] * R[query row]`` with ``W`` the integrated attention gradient.
    """
    target, maps, grads = attention_gradients(model, inputs, class_index, start_layer)
    valid = valid_tokens(model, inputs)
    matrices = []
    for attn, grad in zip(maps, grads):
        if valid is not None:
            grad = grad * valid_pairs(valid)
        importance = (attn.transpose(-1, -2) @ grad).abs().mean(dim=(-1, -2))
        importance = importance / importance.sum(dim=1, keepdim=True)
        fused = (importance[:, :, None, None] * attn).sum(dim=1)
        matrices.append(fused + eye_like(fused))
    relevance = rollout_row(matrices, model.query_rows(inputs))
    return integrated_attention_gradient(model, inputs, target, steps, maps[-1].shape[1:]) * relevance


def beyond_intuition_t(model, inputs, class_index=None, start_layer=6, steps=20, absolute=True):
    """Token-wise token attribution (TI "Ours-T"):

    per block ``b >= start_layer``: ``o_j = ||(v W_o^T)_j|| / ||z_j||`` (``z`` = block input before its norm,
    ``v`` = values, heads concatenated, ``W_o`` = output projection without bias);
    ``R = prod_b (I + mean_h(A_b) diag(o))``; result = ``W[query row] * |R[query row]|`` (TI's ViT; its BERT code
    takes no absolute value: ``absolute=False``).
    """
    with recorded(model, inputs, with_grad=False, first_block=start_layer) as (logits, maps):
        target = target_classes(logits, class_index)
        matrices = []
        for index in range(start_layer, len(maps)):
            block_input, values = model.value_terms(index)
            order = values.norm(dim=-1) / block_input.norm(dim=-1)
            weighted = maps[index].mean(dim=1) * order[:, None, :]
            matrices.append(weighted + eye_like(weighted))
        relevance = rollout_row(matrices, model.query_rows(inputs))
        relevance = relevance.abs() if absolute else relevance
        map_shape = maps[-1].shape[1:]
    return integrated_attention_gradient(model, inputs, target, steps, map_shape) * relevance
