"""Layers that can pass relevance backwards, shared by every model (ViT, BERT, ...).

Each layer computes its forward exactly like its ``torch.nn`` parent. While the model is inside
``recording(model)``, a layer keeps the inputs its rule needs (references to tensors autograd keeps anyway);
``relprop(R, composite)`` then returns the relevance of those inputs. Layers whose rule is the identity in both
original rule sets (LayerNorm, GELU, Tanh, Softmax, Dropout) are plain ``PassThrough`` layers.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import rules


class RelevanceLayer(nn.Module):
    """Base: ``keep`` stores tensors for ``relprop`` only while recording."""
    recording = False

    def keep(self, **tensors):
        if self.recording:
            self.saved = tensors

    def relprop(self, R, composite):
        raise NotImplementedError


@contextmanager
def recording(model, first_block=0, fused_before=True):
    """Record what the relevance rules need during the forwards inside the block; forget it on exit.

    Blocks before ``first_block`` (of ``model.blocks``) record nothing. They keep their fused attention kernel, or
    with ``fused_before=False`` compute attention as recorded blocks do (the same rounding whatever the batch:
    the conservative rules amplify a fused kernel's batch-dependent rounding about 10^4 times)."""
    before = [m for block in model.blocks[:first_block] for m in block.modules()]
    skipped = {id(m) for m in before}
    layers = [m for m in model.modules() if isinstance(m, RelevanceLayer) and id(m) not in skipped]
    unfused = [] if fused_before else [m for m in before if isinstance(m, AttentionCore)]
    for layer in layers:
        layer.recording = True
    for core in unfused:
        core.fused = False
    try:
        yield model
    finally:
        for core in unfused:
            core.fused = True
        for layer in layers:
            layer.recording = False
            layer.__dict__.pop("saved", None)


class PassThrough:
    """Mixin for layers whose relevance rule is the identity."""

    def relprop(self, R, composite):
        return R


class LayerNorm(PassThrough, nn.LayerNorm):
    pass


class GELU(PassThrough, nn.GELU):
    pass


class Tanh(PassThrough, nn.Tanh):
    pass


class QuickGELU(PassThrough, nn.Module):
    """``x * sigmoid(1.702 x)`` (OpenAI CLIP's activation)."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class L2Normalize(PassThrough, nn.Module):
    """``x / ||x||`` over the last dimension (CLIP's embeddings before their cosine similarity)."""

    def forward(self, x):
        return x / x.norm(dim=-1, keepdim=True)


class Dropout(PassThrough, nn.Dropout):
    pass


class Linear(RelevanceLayer, nn.Linear):
    """``y = x W^T + b``; relevance by the composite's linear rule (bias excluded). The rules take the weight
    as it is (sign splits are computed per call, never cached: no copies of the weights stay in memory)."""

    def forward(self, x):
        self.keep(x=x)
        return F.linear(x, self.weight, self.bias)

    def relprop(self, R, composite):
        return rules.on_relevant_rows(composite.linear, self.saved["x"], self.weight.detach(), R)


class PatchConv(RelevanceLayer, nn.Conv2d):
    """The patch-embedding convolution; relevance by the z^B rule (both rule sets)."""

    def forward(self, x):
        self.keep(x=x)
        return self._conv_forward(x, self.weight, self.bias)

    def relprop(self, R, composite):
        return rules.conv_zbeta(self.saved["x"], self.weight, self.stride, self.padding, R)


class Add(RelevanceLayer):
    """Residual addition ``a + b``; relevance by the composite's add rule, returns ``[R_a, R_b]``."""

    def forward(self, a, b):
        out = a + b
        self.keep(a=a, b=b, out=out)
        return out

    def relprop(self, R, composite):
        return composite.add([self.saved["a"], self.saved["b"]], R, self.saved["out"])


class Clone(RelevanceLayer):
    """A tensor used by several branches; relprop merges the branches' relevances."""

    def forward(self, x):
        self.keep(x=x)
        return x

    def relprop(self, Rs, composite):
        return rules.clone(self.saved["x"], Rs)


class TokenSelect(RelevanceLayer):
    """Pooling by one token: ``y = x[:, index]`` (the CLS token), or ``y_b = x[b, rows_b]`` with per-sample
    ``rows`` ``[B]`` (CLIP's EOT token)."""

    def __init__(self, index=0):
        super().__init__()
        self.index = index

    def forward(self, x, rows=None):
        rows = torch.full((x.shape[0],), self.index, device=x.device) if rows is None else rows
        self.keep(x=x, rows=rows)
        return x[torch.arange(x.shape[0], device=x.device), rows]

    def relprop(self, R, composite):
        return rules.select_token(self.saved["x"], self.saved["rows"], R)


class AttentionCore(RelevanceLayer):
    """Scaled dot-product attention over heads, ``out = softmax(q k^T * scale + mask) v`` (q, k, v: B x H x N x d).

    While recording, the attention probabilities ``A`` are materialised and kept (``self.attn``); with gradients
    enabled they always require grad (a leaf when nothing before them does, e.g. with frozen weights), so methods
    can take gradients with respect to them. Otherwise the fused kernel runs (unless ``fused`` is False).
    The kept ``q, k, v`` are the caller's tensors (views of the projections' outputs, no copies).
    ``relprop`` follows TE: ``(R_A, R_v) = matmul rule on A v``, both halved (the halving of ``R`` before the
    rule is exact); the softmax passes relevance;
    with an additive ``mask`` (TE's BERT), the composite's add rule on ``scaled scores + mask`` keeps the scores'
    share; ``(R_q, R_k) = matmul rule on q k^T`` (unscaled), both halved. ``R_A`` is kept as
    ``self.attn_relevance``.
    """

    fused = True

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, q, k, v, mask=None):
        if self.fused and not self.recording:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        scores = (q @ k.transpose(-1, -2)).mul_(self.scale)
        if mask is not None:
            scores.add_(mask)
        attn = scores.softmax(dim=-1)
        if self.recording and torch.is_grad_enabled() and not attn.requires_grad:
            attn.requires_grad_()
        self.keep(q=q, k=k, v=v, attn=attn, mask=mask)
        return attn @ v

    @property
    def attn(self):
        return self.saved["attn"]

    @property
    def attn_relevance(self):
        return self.saved["attn_relevance"]

    def relprop(self, R, composite, stop_at_attention=False):
        q, k, v, attn = (self.saved[n] for n in ("q", "k", "v", "attn"))
        R_attn, R_v = rules.matmul(attn, v, R / 2)
        self.saved["attn_relevance"] = R_attn
        if stop_at_attention:
            return None
        R_scores, product = R_attn, None
        mask = self.saved["mask"]
        if mask is not None:
            product = q @ k.transpose(-1, -2)
            R_scores = composite.add([product * self.scale, mask], R_attn, first_only=True)[0]
        R_q, R_kt = (r / 2 for r in rules.matmul(q, k.transpose(-1, -2), R_scores, product))
        return R_q, R_kt.transpose(-1, -2), R_v
