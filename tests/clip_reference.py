"""A literal, per-pair, float64 re-statement of the originals' CLIP code, for tests only.

It follows the generic-attention notebook's ``interpret`` and Beyond Intuition's ``Interpretor`` over an open_clip
model's own weights: a manual forward of one image and all texts (OpenAI's module tree, q scaled before ``q k^T``,
an additive ``-inf`` causal mask), ``logits_per_image``, one-hot on the explained text, ``torch.autograd.grad`` per
block, full N x N products, Python loops. LRP (``transformer_attribution``, no CLIP original) uses
``te_reference``'s gradprop rules through the similarity, as TE's ViT code would.
"""
import numpy as np
import torch
import torch.nn.functional as F

import te_reference as te


def blocks_forward(blocks, x, mask=None, scale=None):
    """Residual attention blocks; records each block's inputs, attention maps and intermediate tensors."""
    records = []
    for blk in blocks:
        b = {"x_in": x}
        h = blk.ln_1(x)
        b["n1"] = h
        n, width = h.shape[1], h.shape[2]
        heads = blk.attn.num_heads
        q, k, v = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(1, n, heads, width // heads).transpose(1, 2) for t in (q, k, v))
        scores = (q * (width // heads) ** -0.5) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        A = scores.softmax(dim=-1)
        b.update(q=q, k=k, v=v, A=A, scores=scores)
        ctx = (A @ v).transpose(1, 2).reshape(1, n, width)
        b["ctx"] = ctx
        attn_out = F.linear(ctx, blk.attn.out_proj.weight, blk.attn.out_proj.bias)
        b["attn_out"] = attn_out
        x = x + attn_out
        b["x_mid"] = x
        h = blk.ln_2(x)
        b["n2"] = h
        act = blk.mlp.gelu(blk.mlp.c_fc(h))
        b["act"] = act
        mlp_out = blk.mlp.c_proj(act)
        b["mlp_out"] = mlp_out
        x = x + mlp_out
        records.append(b)
    return x, records


def image_forward(model, image):
    v = model.visual
    x = F.conv2d(image, v.conv1.weight, stride=v.conv1.stride)
    x = x.reshape(1, x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([v.class_embedding + torch.zeros(1, 1, x.shape[-1], dtype=x.dtype), x], dim=1)
    rec = {"image": image, "tokens": x}
    x = v.ln_pre(x + v.positional_embedding)
    rec["pre"] = x
    x, rec["blocks"] = blocks_forward(v.transformer.resblocks, x)
    rec["final"] = x
    rec["normed"] = v.ln_post(x[:, 0])
    return rec["normed"] @ v.proj, rec


def text_forward(model, ids, mask_value=float("-inf")):
    x = model.token_embedding(ids) + model.positional_embedding[:ids.shape[1]]
    n = ids.shape[1]
    mask = torch.full((n, n), mask_value, dtype=x.dtype).triu(1)
    x, records = blocks_forward(model.transformer.resblocks, x, mask)
    eot = int(ids.argmax())
    normed = model.ln_final(x)
    return normed[:, eot] @ model.text_projection, {"blocks": records, "normed": normed, "eot": eot, "mask": mask}


def logits_per_image(model, image, texts, scale=1.0):
    image_features, rec = image_forward(model, image * scale)
    text_features = torch.cat([text_forward(model, ids[None])[0] for ids in texts])
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image_features @ text_features.t(), rec, text_features


def eye(n):
    return torch.eye(n, dtype=torch.float64)


def interpret_image(model, image, texts, index, start_layer=-1):
    """The notebook's image relevance for text ``index``; ``-1``: last block only."""
    logits, rec, _ = logits_per_image(model, image, texts)
    return notebook_relevance(rec["blocks"], logits[0, index], start_layer)[0, 1:]


def interpret_text(model, image, texts, index, start_layer=-1):
    """The notebook's text relevance of text ``index`` (the EOT row, every column)."""
    image_features, _ = image_forward(model, image)
    text_features, rec = text_forward(model, texts[index][None])
    logit = model.logit_scale.exp() * (image_features / image_features.norm()) @ (text_features / text_features.norm()).t()
    return notebook_relevance(rec["blocks"], logit[0, 0], start_layer)[rec["eot"]]


def notebook_relevance(blocks, logit, start_layer):
    """The notebook's loop: ``R = I``; ``R = R + mean_h clamp(grad x A, 0) R`` for blocks ``>= start_layer``
    (``-1``: the last block only)."""
    start_layer = len(blocks) - 1 if start_layer == -1 else start_layer
    R = eye(blocks[0]["A"].shape[-1])
    for i, b in enumerate(blocks):
        if i < start_layer:
            continue
        grad = torch.autograd.grad(logit, [b["A"]], retain_graph=True)[0]
        R = R + (grad * b["A"]).clamp(min=0).mean(dim=1)[0] @ R
    return R


def ig_weight(model, image, texts, index, steps):
    total = 0
    for alpha in np.linspace(0, 1, steps):
        logits, rec, _ = logits_per_image(model, image, texts, scale=float(alpha))
        total = total + torch.autograd.grad(logits[0, index], [rec["blocks"][-1]["A"]])[0]
    return (total / steps).clamp(min=0).mean(1)[0, 0, :]


def generate_ours(model, image, texts, index, num_layers, steps=20):
    """TI ``generate_ours`` with the real head count (TI used the number of layers)."""
    logits, rec, _ = logits_per_image(model, image, texts)
    blocks = rec["blocks"]
    n = blocks[0]["A"].shape[-1]
    R = eye(n)
    for i, b in enumerate(blocks):
        if i <= num_layers:
            continue
        grad = torch.autograd.grad(logits[0, index], [b["A"]], retain_graph=True)[0]
        cam, grad = b["A"][0], grad[0]
        Ih = torch.matmul(cam.transpose(-1, -2), grad).abs().mean(dim=(-1, -2))
        Ih = Ih / Ih.sum()
        cam = (Ih.reshape(1, -1) @ cam.reshape(cam.shape[0], -1)).reshape(n, n)
        R = R + cam @ R
    return (ig_weight(model, image, texts, index, steps) * R)[0, 1:]


def generate_ours_c(model, image, texts, index, num_layers, steps=20):
    """TI ``generate_ours_c``: ``vproj`` from ``ln_1`` of the residual stream after the attention update; no abs."""
    _, rec, _ = logits_per_image(model, image, texts)
    blocks = rec["blocks"]
    n = blocks[0]["A"].shape[-1]
    R = eye(n)
    resblocks = model.visual.transformer.resblocks
    for i, (blk, b) in enumerate(zip(resblocks, blocks)):
        if i <= num_layers:
            continue
        width = b["x_mid"].shape[-1]
        v = F.linear(blk.ln_1(b["x_mid"]), blk.attn.in_proj_weight[2 * width:], blk.attn.in_proj_bias[2 * width:])
        vproj = v @ blk.attn.out_proj.weight.t()
        order = torch.linalg.norm(vproj, dim=-1).squeeze() / torch.linalg.norm(b["x_in"], dim=-1).squeeze()
        R = R + (b["A"][0].mean(0) @ torch.diag_embed(order)) @ R
    return (ig_weight(model, image, texts, index, steps) * R)[0, 1:]


def generate_cam_attn(model, image, texts, index):
    logits, rec, _ = logits_per_image(model, image, texts)
    A = rec["blocks"][-1]["A"]
    grad = torch.autograd.grad(logits[0, index], [A])[0]
    cam, grad = A[0, :, 0, 1:], grad[0, :, 0, 1:].mean(dim=-1, keepdim=True)
    return (cam * grad).mean(0).clamp(min=0)


def generate_rollout(model, image, start_layer=0):
    _, rec = image_forward(model, image)
    mats = []
    for b in rec["blocks"]:
        a = b["A"][0].sum(0) / b["A"].shape[1] + eye(b["A"].shape[-1])
        mats.append(a / a.sum(dim=-1, keepdim=True))
    return te.rollout_product(mats, start_layer)[0, 1:]


def generate_raw_attention(model, image):
    _, rec = image_forward(model, image)
    A = rec["blocks"][-1]["A"]
    return (A[0].sum(0) / A.shape[1])[0, 1:]


def blocks_relprop(resblocks, records, R, mask=None):
    """TE's conservative relprop through OpenAI-named blocks (te_reference's order); the causal mask's addition to
    the scores takes the add rule, as TE's BERT does with its padding mask."""
    attn_rel = [None] * len(records)
    for i in reversed(range(len(records))):
        blk, b = resblocks[i], records[i]
        r_skip, r_mlp = te.add(b["x_mid"], b["mlp_out"], R, True)
        r_mlp = te.linear(b["act"], blk.mlp.c_proj.weight, r_mlp, True)
        r_mlp = te.linear(b["n2"], blk.mlp.c_fc.weight, r_mlp, True)
        R = te.clone(b["x_mid"], [r_skip, r_mlp])
        r_skip, r_attn = te.add(b["x_in"], b["attn_out"], R, True)
        r_attn = te.linear(b["ctx"], blk.attn.out_proj.weight, r_attn, True)
        _, n, width = r_attn.shape
        heads = blk.attn.num_heads
        r_attn = r_attn.reshape(1, n, heads, width // heads).transpose(1, 2)
        r_A, r_v = te.simple(lambda a, v: a @ v, [b["A"], b["v"]], r_attn)
        r_A, r_v = r_A / 2, r_v / 2
        attn_rel[i] = r_A
        r_scores = r_A
        if mask is not None:
            raw = b["q"] @ b["k"].transpose(-1, -2) * (width // heads) ** -0.5
            r_scores = te.add(raw, mask.expand_as(raw), r_A, True)[0]
        r_q, r_k = te.simple(lambda q, k: q @ k.transpose(-1, -2), [b["q"], b["k"]], r_scores)
        r_q, r_k = r_q / 2, r_k / 2
        r_qkv = torch.cat([t.transpose(1, 2).reshape(1, n, width) for t in (r_q, r_k, r_v)], dim=-1)
        r_attn = te.linear(b["n1"], blk.attn.in_proj_weight, r_qkv, True)
        R = te.clone(b["x_in"], [r_skip, r_attn])
    return attn_rel


def similarity_relprop(embedding, others, logit_scale, seed):
    """The similarity as a linear layer on the normalised embedding; the normalisation passes relevance."""
    normed = embedding / embedding.norm(dim=-1, keepdim=True)
    return te.linear(normed, logit_scale.exp() * others, seed, True)


def transformer_attribution_image(model, image, texts, index, start_layer=1):
    logits, rec, text_features = logits_per_image(model, image, texts)
    blocks = rec["blocks"]
    grads = torch.autograd.grad(logits[0, index], [b["A"] for b in blocks], retain_graph=True)
    seed = te.one_hot_seed(logits, index)
    R = similarity_relprop(rec["normed"] @ model.visual.proj, text_features, model.logit_scale, seed)
    R = te.linear(rec["normed"], model.visual.proj.t(), R, True)
    R = te.simple(lambda t: t[:, 0], [rec["final"]], R)[0]
    rels = blocks_relprop(model.visual.transformer.resblocks, blocks, R)
    cams = [(g[0] * r[0]).clamp(min=0).mean(0) + eye(g.shape[-1]) for g, r in zip(grads, rels)]
    return te.rollout_product(cams, start_layer)[0, 1:]


def transformer_attribution_text(model, image, texts, index, start_layer=1):
    """TE's conservative LRP through the text tower for text ``index``: the causal mask is the additive
    ``finfo.min`` mask of our tower (a ``-inf`` one gives NaN in the add rule), taken by the add rule at the
    scores; ``ln_final`` precedes the EOT selection and passes relevance."""
    image_features, _ = image_forward(model, image)
    ids = texts[index][None]
    text_features, rec = text_forward(model, ids, mask_value=torch.finfo(image_features.dtype).min)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    logit = model.logit_scale.exp() * image_features @ (text_features / text_features.norm(dim=-1, keepdim=True)).t()
    blocks = rec["blocks"]
    grads = torch.autograd.grad(logit[0, 0], [b["A"] for b in blocks], retain_graph=True)
    R = similarity_relprop(text_features, image_features, model.logit_scale, torch.ones_like(logit))
    eot = rec["eot"]
    R = te.linear(rec["normed"][:, eot], model.text_projection.t(), R, True)
    R = te.simple(lambda t: t[:, eot], [rec["normed"]], R)[0]
    rels = blocks_relprop(model.transformer.resblocks, blocks, R, rec["mask"])
    cams = [(g[0] * r[0]).clamp(min=0).mean(0) + eye(g.shape[-1]) for g, r in zip(grads, rels)]
    return te.rollout_product(cams, start_layer)[eot]
