"""Which gradient x input rule goes where: AttnLRP and CP-LRP as composites over the shared layers.

``modified_gradients(model, composite)`` hooks the rules of ``gradient_rules`` onto every layer of a model built
from ``baselines.relevance.layers`` (by layer type, no model code changes) and removes them on exit. Inside, the
gradient of a logit times an input is that input's relevance.

Slots of a ``GradientComposite``:

* ``attention``: ``"softmax"`` (AttnLRP: uniform rule on ``q k^T`` and ``A v``, i.e. the gradients of q, k, v
  divided by 4, 4, 2, and the softmax rule, which plain autograd already is) or ``"constant"`` (CP-LRP: q and k
  detached, the attention probabilities act as constant weights on v).
* ``epsilon``: epsilon of the epsilon-LRP rule on every linear layer (0: LRP-0, LXT's efficient mode).
* ``gamma`` / ``conv_gamma``: LRP-gamma on the linear layers outside attention (MLP, pooler, head) / on the patch
  embedding, as LXT's ViT recipe applies Zennit's ``Gamma`` (0: off). The attention projections (linear layers
  next to an attention core) keep epsilon, as in LXT, whose torchvision attention calls its projections
  functionally.
* element-wise non-linearities (GELU, quick-GELU, tanh) always take the identity rule, LayerNorms always hold their
  variance constant, L2 normalisations (CLIP's embeddings) their norm.
"""
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch.nn as nn

from . import gradient_rules as gr
from . import layers as rl


@dataclass(frozen=True)
class GradientComposite:
    name: str
    attention: str = "softmax"
    epsilon: float = 0.0
    gamma: float = 0.0
    conv_gamma: float = 0.0

    def __post_init__(self):
        if self.attention not in ("softmax", "constant"):
            raise ValueError(f"attention rule must be 'softmax' or 'constant', not {self.attention!r}")
        if min(self.epsilon, self.gamma, self.conv_gamma) < 0:
            raise ValueError("epsilon, gamma and conv_gamma must be >= 0")

    def with_options(self, **options):
        return replace(self, **options)


ATTN_LRP = GradientComposite("attnlrp", attention="softmax")
"""AttnLRP (Achtibat et al., ICML 2024) as LXT's efficient mode."""

CP_LRP = GradientComposite("cp_lrp", attention="constant")
"""CP-LRP (Ali et al., ICML 2022): no relevance through the query/key path."""


def _attention_inputs(composite):
    def hook(module, args, kwargs):
        q, k, v, *rest = args
        if composite.attention == "constant":
            q, k = q.detach(), k.detach()
        else:
            q, k, v = gr.uniform_rule(q, 4), gr.uniform_rule(k, 4), gr.uniform_rule(v, 2)
        return (q, k, v, *rest), kwargs
    return hook


def _output_rule(rule):
    def hook(module, args, out):
        return rule(module, args[0], out)
    return hook


def _attention_projections(model):
    """Linear layers that are siblings of an attention core (q, k, v and fused projections)."""
    found = set()
    for parent in model.modules():
        children = list(parent.children())
        if any(isinstance(c, rl.AttentionCore) for c in children):
            found.update(id(c) for c in children if isinstance(c, nn.Linear))
    return found


def _rules(model, composite):
    """``(module, kind, hook)`` for every layer whose gradient the composite changes."""
    projections = _attention_projections(model)
    for module in model.modules():
        if isinstance(module, rl.AttentionCore):
            yield module, "pre", _attention_inputs(composite)
        elif isinstance(module, (nn.GELU, nn.Tanh, rl.QuickGELU)):
            yield module, "post", _output_rule(lambda m, x, out: gr.identity_rule(x, out))
        elif isinstance(module, rl.L2Normalize):
            yield module, "post", _output_rule(
                lambda m, x, out: gr.constant_norm(x, out, x.norm(dim=-1, keepdim=True)))
        elif isinstance(module, nn.LayerNorm):
            yield module, "post", _output_rule(gr.constant_variance_norm)
        elif isinstance(module, nn.Conv2d) and composite.conv_gamma:
            yield module, "post", _output_rule(lambda m, x, out: gr.gamma_rule(m, x, out, composite.conv_gamma))
        elif isinstance(module, nn.Linear) and composite.gamma and id(module) not in projections:
            yield module, "post", _output_rule(lambda m, x, out: gr.gamma_rule(m, x, out, composite.gamma))
        elif isinstance(module, nn.Linear) and composite.epsilon:
            yield module, "post", _output_rule(lambda m, x, out: gr.epsilon_rule(out, composite.epsilon))


@contextmanager
def modified_gradients(model, composite):
    """Inside, ``model``'s backward follows ``composite`` (the forward values are unchanged)."""
    handles = []
    try:
        for module, kind, hook in _rules(model, composite):
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()
