"""A literal re-statement of TE's BERT relprop and of the BERT methods of TE and TI, for tests only.

Like ``te_reference`` (whose gradprop rules it reuses): one unpadded text at a time, a manual forward over a
Hugging Face ``BertForSequenceClassification``'s own weights with TE's always-present additive mask
(``(1 - 1) * -10000``), the relevance rules through ``torch.autograd.grad``, full ``n x n`` matrices, the
originals' ``ExplanationGenerator`` steps in their order. Slow, simple, float64.
"""
import math

import numpy as np
import torch

from te_reference import add, clone, eye, linear, one_hot_seed, simple


def _split(x, heads):
    return x.view(*x.shape[:2], heads, -1).transpose(1, 2)


def _merge(x):
    return x.transpose(1, 2).flatten(2)


def forward(hf, ids, alpha=1.0):
    """Logits of one text ``[1, n]`` and every op's input; ``alpha`` scales the embedding output (TI)."""
    bert, heads = hf.bert, hf.config.num_attention_heads
    e = bert.embeddings
    n = ids.shape[1]
    x = e.word_embeddings(ids) + e.token_type_embeddings(torch.zeros_like(ids)) + e.position_embeddings.weight[:n]
    x = e.LayerNorm(x) * alpha
    mask = (1.0 - torch.ones(1, 1, 1, n, dtype=x.dtype)) * -10000.0
    rec = {"mask": mask, "layers": []}
    for layer in bert.encoder.layer:
        sa = layer.attention.self
        b = {"x_in": x}
        q, k, v = (_split(lin(x), heads) for lin in (sa.query, sa.key, sa.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        A = (scores + mask).softmax(dim=-1)
        b.update(q=q, k=k, v=v, scores=scores, A=A, v_concat=sa.value(x))
        b["ctx"] = _merge(torch.matmul(A, v))
        b["attn_dense"] = layer.attention.output.dense(b["ctx"])
        b["ao"] = layer.attention.output.LayerNorm(b["attn_dense"] + x)
        b["inter"] = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(b["ao"]))
        b["out_dense"] = layer.output.dense(b["inter"])
        x = layer.output.LayerNorm(b["out_dense"] + b["ao"])
        rec["layers"].append(b)
    rec["last"] = x
    rec["pooled"] = torch.tanh(bert.pooler.dense(x[:, 0]))
    return hf.classifier(rec["pooled"]), rec


def relprop(hf, rec, seed, ours):
    """TE's BERT relprop; returns each layer's attention relevance (after the /2) and the encoder-input relevance."""
    bert, heads = hf.bert, hf.config.num_attention_heads
    R = linear(rec["pooled"], hf.classifier.weight, seed, ours)
    R = linear(rec["last"][:, 0], bert.pooler.dense.weight, R, ours)
    R = simple(lambda t: torch.index_select(t, 1, torch.tensor([0])), [rec["last"]], R.unsqueeze(1))[0]
    attn_rel = [None] * len(rec["layers"])
    for i in reversed(range(len(rec["layers"]))):
        layer, b = bert.encoder.layer[i], rec["layers"][i]
        r_dense, r_ao2 = add(b["out_dense"], b["ao"], R, ours)
        r_inter = linear(b["inter"], layer.output.dense.weight, r_dense, ours)
        r_ao1 = linear(b["ao"], layer.intermediate.dense.weight, r_inter, ours)
        r_ao = clone(b["ao"], [r_ao1, r_ao2])
        r_d, r_h2 = add(b["attn_dense"], b["x_in"], r_ao, ours)
        r_ctx = _split(linear(b["ctx"], layer.attention.output.dense.weight, r_d, ours), heads)
        r_A, r_v = simple(torch.matmul, [b["A"], b["v"]], r_ctx)
        r_A, r_v = r_A / 2, r_v / 2
        attn_rel[i] = r_A
        r_scores, _ = add(b["scores"], rec["mask"], r_A, ours)
        r_q, r_kt = simple(torch.matmul, [b["q"], b["k"].transpose(-1, -2)], r_scores)
        r_q, r_k = _merge(r_q / 2), _merge((r_kt / 2).transpose(-1, -2))
        sa = layer.attention.self
        r_h1 = clone(b["x_in"], [linear(b["x_in"], sa.query.weight, r_q, ours),
                                 linear(b["x_in"], sa.key.weight, r_k, ours),
                                 linear(b["x_in"], sa.value.weight, _merge(r_v), ours)])
        R = clone(b["x_in"], [r_h1, r_h2])
    return attn_rel, R


def attention_and_grads(hf, ids, index=None, alpha=1.0):
    logits, rec = forward(hf, ids, alpha)
    maps = [b["A"] for b in rec["layers"]]
    index = int(logits.argmax()) if index is None else index
    grads = torch.autograd.grad(logits[0, index], maps, retain_graph=True)
    return logits, rec, maps, grads, index


def compute_rollout_attention(matrices, start_layer=0):
    """TE's BERT rollout: ``+ I``, rows normalised, later layers on the left."""
    n = matrices[0].shape[-1]
    matrices = [m + eye(n) for m in matrices]
    matrices = [m / m.sum(dim=-1, keepdim=True) for m in matrices]
    joint = matrices[start_layer]
    for m in matrices[start_layer + 1:]:
        joint = m @ joint
    return joint


def transformer_attribution(hf, ids, index=None, start_layer=None):
    """TE ``generate_LRP`` (default start layer: the last), ``rollout[0, 0] = rollout[0].min()``."""
    logits, rec, maps, grads, index = attention_and_grads(hf, ids, index)
    rels, _ = relprop(hf, rec, one_hot_seed(logits, index), ours=True)
    cams = [(g[0] * r[0]).clamp(min=0).mean(0) for g, r in zip(grads, rels)]
    rollout = compute_rollout_attention(cams, len(cams) - 1 if start_layer is None else start_layer)
    rollout[0, 0] = rollout[0].min()
    return rollout[0]


def lrp_last_layer(hf, ids, index=None):
    logits, rec, _, _, index = attention_and_grads(hf, ids, index)
    rels, _ = relprop(hf, rec, one_hot_seed(logits, index), ours=False)
    cam = rels[-1][0].clamp(min=0).mean(0)
    cam[0, 0] = 0
    return cam[0]


def full_lrp(hf, ids, index=None):
    logits, rec, _, _, index = attention_and_grads(hf, ids, index)
    cam = relprop(hf, rec, one_hot_seed(logits, index), ours=False)[1].sum(dim=2)
    cam[:, 0] = 0
    return cam[0]


def rollout(hf, ids, start_layer=0):
    _, rec = forward(hf, ids)
    rollout = compute_rollout_attention([b["A"][0].sum(0) / b["A"].shape[1] for b in rec["layers"]], start_layer)
    rollout[0, 0] = 0
    return rollout[0]


def attn_last_layer(hf, ids):
    _, rec = forward(hf, ids)
    cam = rec["layers"][-1]["A"][0].mean(0)
    cam[0, 0] = 0
    return cam[0]


def attn_gradcam(hf, ids, index=None):
    """TE ``generate_attn_gradcam``: head weights = gradient mean over the whole matrix, clamp(head mean), min-max
    over the whole matrix, ``[0, 0] = 0``, row 0."""
    _, _, maps, grads, _ = attention_and_grads(hf, ids, index)
    w = grads[-1][0].mean(dim=[1, 2], keepdim=True)
    cam = (maps[-1][0] * w).mean(0).clamp(min=0)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    cam[0, 0] = 0
    return cam[0]


def generic_attribution(hf, ids, index=None):
    """TI ``generate_genattr``: last layer, clamp then head mean, ``R = I + cam R``."""
    _, _, maps, grads, _ = attention_and_grads(hf, ids, index)
    R = eye(maps[-1].shape[-1])
    R = R + (grads[-1][0] * maps[-1][0]).clamp(min=0).mean(0) @ R
    R[0, 0] = 0
    return R[0]


def _ig_weight(hf, ids, index, steps):
    total = 0
    for alpha in np.linspace(0, 1, steps):
        total = total + attention_and_grads(hf, ids, index, float(alpha))[3][-1]
    return (total / steps).clamp(min=0).mean(1)[:, 0, :]


def beyond_intuition_h(hf, ids, index=None, steps=20):
    """TI ``generate_ours`` (BERT): last layer only, head weights ``mean |A^T G|``, IG on the embedding output."""
    _, _, maps, grads, index = attention_and_grads(hf, ids, index)
    A, G = maps[-1][0], grads[-1][0]
    heads, n = A.shape[0], A.shape[-1]
    Ih = torch.matmul(A.transpose(-1, -2), G).abs().mean(dim=(-1, -2))
    Ih = Ih / Ih.sum()
    R = eye(n)
    R = R + torch.matmul(Ih, A.reshape(heads, -1)).reshape(n, n) @ R
    R = _ig_weight(hf, ids, index, steps) * R
    R[0, 0] = 0
    return R[0]


def beyond_intuition_t(hf, ids, index=None, steps=20):
    """TI ``generate_ours_c`` (BERT): last 4 layers, ``order = |v W_o^T| / |z|``, no absolute value."""
    logits, rec = forward(hf, ids)
    index = int(logits.argmax()) if index is None else index
    n = ids.shape[1]
    R = eye(n)
    for layer, b in list(zip(hf.bert.encoder.layer, rec["layers"]))[-4:]:
        vproj = b["v_concat"] @ layer.attention.output.dense.weight.t()
        order = torch.linalg.norm(vproj, dim=-1).squeeze() / torch.linalg.norm(b["x_in"], dim=-1).squeeze()
        R = R + (b["A"][0].mean(0) @ torch.diag(order)) @ R
    R = _ig_weight(hf, ids, index, steps) * R
    R[0, 0] = 0
    return R[0]
