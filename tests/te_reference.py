"""An independent, deliberately literal re-statement of the original works' computations, for tests only.

It follows the originals' mechanics rather than ours: one sample at a time, a manual forward over a timm
``VisionTransformer``'s own weights, LRP rules evaluated through ``torch.autograd.grad`` ("gradprop") exactly as
TE's ``layers_ours`` / ``layers_lrp`` state them, full N x N rollout products, Python loops. Slow, simple, float64.
"""
import numpy as np
import torch
import torch.nn.functional as F


def safe_divide(a, b):
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).type(den.type()) * 1e-9
    return a / den * b.ne(0).type(b.type())


def gradprop(Z, X, S):
    return torch.autograd.grad(Z, X, S, retain_graph=True)


def simple(f, inputs, R):
    """RelPropSimple: gradient x input with S = R / Z."""
    X = [x.detach().requires_grad_() for x in inputs]
    Z = f(*X)
    C = gradprop(Z, X, safe_divide(R, Z))
    return [x * c for x, c in zip(X, C)]


def linear(x, W, R, ours):
    pw, nw = W.clamp(min=0), W.clamp(max=0)
    px = x.clamp(min=0).detach().requires_grad_()
    nx = x.clamp(max=0).detach().requires_grad_()
    Z1, Z2 = F.linear(px, pw), F.linear(nx, nw)
    S1 = safe_divide(R, Z1 + Z2) if ours else safe_divide(R, Z1)
    S2 = safe_divide(R, Z1 + Z2) if ours else safe_divide(R, Z2)
    return px * gradprop(Z1, px, S1)[0] + nx * gradprop(Z2, nx, S2)[0]


def add(a, b, R, ours):
    ra, rb = simple(lambda u, v: u + v, [a, b], R)
    if not ours:
        return ra, rb
    a_sum, b_sum = ra.sum(), rb.sum()
    a_fact = safe_divide(a_sum.abs(), a_sum.abs() + b_sum.abs()) * R.sum()
    b_fact = safe_divide(b_sum.abs(), a_sum.abs() + b_sum.abs()) * R.sum()
    return ra * safe_divide(a_fact, ra.sum()), rb * safe_divide(b_fact, rb.sum())


def clone(x, Rs):
    X = x.detach().requires_grad_()
    Z = [X for _ in Rs]
    S = [safe_divide(r, z) for r, z in zip(Rs, Z)]
    return X * gradprop(Z, X, S)[0]


def conv_zbeta(x, W, stride, R):
    pw, nw = W.clamp(min=0), W.clamp(max=0)
    X = x.detach().requires_grad_()
    L = (X * 0 + X.min()).detach().requires_grad_()
    H = (X * 0 + X.max()).detach().requires_grad_()
    Za = F.conv2d(X, W, stride=stride) - F.conv2d(L, pw, stride=stride) - F.conv2d(H, nw, stride=stride) + 1e-9
    S = R / Za
    gx, gl, gh = torch.autograd.grad(Za, [X, L, H], S)
    return X * gx + L * gl + H * gh


def forward(model, image):
    """Manual forward of one image ``[1, 3, H, W]`` through timm's weights; returns logits and every op's input."""
    rec = {"image": image}
    x = model.patch_embed(image)
    x = torch.cat([model.cls_token.expand(1, -1, -1), x], dim=1)
    rec["tokens"] = x
    x = x + model.pos_embed
    blocks = []
    for blk in model.blocks:
        b = {"x_in": x}
        h = blk.norm1(x)
        b["n1"] = h
        B, N, C = h.shape
        heads = blk.attn.num_heads
        q, k, v = F.linear(h, blk.attn.qkv.weight, blk.attn.qkv.bias).reshape(B, N, 3, heads, C // heads) \
            .permute(2, 0, 3, 1, 4)
        A = (torch.einsum("bhid,bhjd->bhij", q, k) * blk.attn.scale).softmax(dim=-1)
        b.update(q=q, k=k, v=v, A=A)
        ctx = torch.einsum("bhij,bhjd->bhid", A, v).transpose(1, 2).reshape(B, N, C)
        b["ctx"] = ctx
        attn_out = blk.attn.proj(ctx)
        b["attn_out"] = attn_out
        x = x + attn_out
        b["x_mid"] = x
        h = blk.norm2(x)
        b["n2"] = h
        act = F.gelu(blk.mlp.fc1(h))
        b["act"] = act
        mlp_out = blk.mlp.fc2(act)
        b["mlp_out"] = mlp_out
        x = x + mlp_out
        blocks.append(b)
    rec["blocks"] = blocks
    normed = model.norm(x)
    rec["normed"] = normed
    return model.head(normed[:, 0]), rec


def relprop(model, rec, seed, ours, to_input=False):
    """TE's relprop order; returns per-block attention relevance (after the /2) and the pixel relevance."""
    R = linear(rec["normed"][:, 0], model.head.weight, seed, ours)
    R = simple(lambda t: torch.index_select(t, 1, torch.tensor([0])), [rec["normed"]], R.unsqueeze(1))[0]
    attn_rel = [None] * len(model.blocks)
    for i in reversed(range(len(model.blocks))):
        blk, b = model.blocks[i], rec["blocks"][i]
        r_skip, r_mlp = add(b["x_mid"], b["mlp_out"], R, ours)
        r_mlp = linear(b["act"], blk.mlp.fc2.weight, r_mlp, ours)
        r_mlp = linear(b["n2"], blk.mlp.fc1.weight, r_mlp, ours)
        R = clone(b["x_mid"], [r_skip, r_mlp])
        r_skip, r_attn = add(b["x_in"], b["attn_out"], R, ours)
        r_attn = linear(b["ctx"], blk.attn.proj.weight, r_attn, ours)
        B, N, C = r_attn.shape
        heads = blk.attn.num_heads
        r_attn = r_attn.reshape(B, N, heads, C // heads).transpose(1, 2)
        r_A, r_v = simple(lambda a, v: torch.einsum("bhij,bhjd->bhid", a, v), [b["A"], b["v"]], r_attn)
        r_A, r_v = r_A / 2, r_v / 2
        attn_rel[i] = r_A
        r_q, r_k = simple(lambda q, k: torch.einsum("bhid,bhjd->bhij", q, k), [b["q"], b["k"]], r_A)
        r_q, r_k = r_q / 2, r_k / 2
        r_qkv = torch.stack([r_q, r_k, r_v]).permute(1, 3, 0, 2, 4).reshape(B, N, 3 * C)
        r_attn = linear(b["n1"], blk.attn.qkv.weight, r_qkv, ours)
        R = clone(b["x_in"], [r_skip, r_attn])
    pixels = None
    if to_input:
        r_tokens, _ = add(rec["tokens"], model.pos_embed, R, ours)
        r_tokens = r_tokens[:, 1:]
        grid = rec["image"].shape[-1] // model.patch_embed.patch_size[0]
        r_tokens = r_tokens.transpose(1, 2).reshape(1, -1, grid, grid)
        pixels = conv_zbeta(rec["image"], model.patch_embed.proj.weight, model.patch_embed.proj.stride,
                            r_tokens).sum(dim=1)
    return attn_rel, pixels


def attention_and_grads(model, image, index=None, scale=1.0):
    """Attention maps and gradients of the target logit w.r.t. them (one image)."""
    logits, rec = forward(model, image * scale)
    maps = [b["A"] for b in rec["blocks"]]
    if index is None:
        index = int(logits.argmax())
    grads = torch.autograd.grad(logits[0, index], maps, retain_graph=True)
    return logits, rec, maps, grads, index


def one_hot_seed(logits, index):
    seed = torch.zeros_like(logits)
    seed[0, index] = 1
    return seed


def rollout_product(matrices, start):
    joint = matrices[start]
    for m in matrices[start + 1:]:
        joint = m @ joint
    return joint


def eye(n):
    return torch.eye(n, dtype=torch.float64)


def transformer_attribution(model, image, index=None, start_layer=1):
    logits, rec, maps, grads, index = attention_and_grads(model, image, index)
    rels, _ = relprop(model, rec, one_hot_seed(logits, index), ours=True)
    cams = [(g[0] * r[0]).clamp(min=0).mean(0) + eye(g.shape[-1]) for g, r in zip(grads, rels)]
    return rollout_product(cams, start_layer)[0, 1:]


def lrp_last_layer(model, image, index=None, is_ablation=False):
    logits, rec, maps, grads, index = attention_and_grads(model, image, index)
    rels, _ = relprop(model, rec, one_hot_seed(logits, index), ours=False)
    cam = rels[-1][0] * (grads[-1][0] if is_ablation else 1)
    return cam.clamp(min=0).mean(0)[0, 1:]


def full_lrp(model, image, index=None):
    logits, rec, maps, grads, index = attention_and_grads(model, image, index)
    return relprop(model, rec, one_hot_seed(logits, index), ours=False, to_input=True)[1][0]


def rollout(model, image, start_layer=1, head_fusion="mean", discard_ratio=0.0):
    """TE's rollout with vit-explain's fusion/discard, keepdim fixed."""
    _, rec = forward(model, image)
    mats = []
    for b in rec["blocks"]:
        A = b["A"][0]
        fused = {"mean": A.mean(0), "max": A.max(0)[0], "min": A.min(0)[0]}[head_fusion].clone()
        flat = fused.view(-1)
        _, idx = flat.topk(int(flat.numel() * discard_ratio), largest=False)
        idx = idx[idx != 0]
        flat[idx] = 0
        a = (fused + eye(fused.shape[0])) / 2
        mats.append(a / a.sum(dim=-1, keepdim=True))
    return rollout_product(mats, start_layer)[0, 1:]


def attn_last_layer(model, image):
    _, rec = forward(model, image)
    return rec["blocks"][-1]["A"][0].clamp(min=0).mean(0)[0, 1:]


def attn_gradcam(model, image, index=None):
    _, _, maps, grads, _ = attention_and_grads(model, image, index)
    cam, grad = maps[-1][0, :, 0, 1:], grads[-1][0, :, 0, 1:]
    return (cam * grad.mean(dim=-1, keepdim=True)).mean(0).clamp(min=0)


def generic_attribution(model, image, index=None, start_layer=0):
    _, _, maps, grads, _ = attention_and_grads(model, image, index)
    n = maps[0].shape[-1]
    R = eye(n)
    for A, G in list(zip(maps, grads))[start_layer:]:
        R = R + (G[0] * A[0]).clamp(min=0).mean(0) @ R
    return R[0, 1:]


def grad_rollout(model, image, index=None, start_layer=0, discard_ratio=0.9):
    _, _, maps, grads, _ = attention_and_grads(model, image, index)
    mats = []
    for A, G in zip(maps, grads):
        fused = (A[0] * G[0]).mean(0)
        fused[fused < 0] = 0
        flat = fused.view(-1)
        _, idx = flat.topk(int(flat.numel() * discard_ratio), largest=False)
        flat[idx] = 0
        a = (fused + eye(fused.shape[0])) / 2
        mats.append(a / a.sum(dim=-1, keepdim=True))
    return rollout_product(mats, start_layer)[0, 1:]


def ig_weight(model, image, index, steps):
    total = 0
    for alpha in np.linspace(0, 1, steps):
        _, _, _, grads, _ = attention_and_grads(model, image, index, scale=float(alpha))
        total = total + grads[-1][0]
    return (total / steps).clamp(min=0).mean(0)


def beyond_intuition_h(model, image, index=None, start_layer=3, steps=20):
    _, _, maps, grads, index = attention_and_grads(model, image, index)
    n = maps[0].shape[-1]
    R = eye(n)
    for A, G in list(zip(maps, grads))[start_layer:]:
        A, G = A[0], G[0]
        Ih = torch.matmul(A.transpose(-1, -2), G).abs().mean(dim=(-1, -2))
        Ih = Ih / Ih.sum()
        cam = torch.matmul(Ih, A.reshape(A.shape[0], -1)).reshape(n, n)
        R = R + cam @ R
    return (ig_weight(model, image, index, steps) * R)[0, 1:]


def beyond_intuition_t(model, image, index=None, start_layer=6, steps=20):
    logits, rec = forward(model, image)
    index = int(logits.argmax()) if index is None else index
    n = rec["blocks"][0]["A"].shape[-1]
    R = eye(n)
    for blk, b in list(zip(model.blocks, rec["blocks"]))[start_layer:]:
        v = b["v"]
        vproj = v.transpose(1, 2).reshape(1, n, -1) @ blk.attn.proj.weight.t()
        order = torch.linalg.norm(vproj, dim=-1).squeeze() / torch.linalg.norm(b["x_in"], dim=-1).squeeze()
        R = R + (b["A"][0].mean(0) @ torch.diag_embed(order)) @ R
    return (ig_weight(model, image, index, steps) * R.abs())[0, 1:]
