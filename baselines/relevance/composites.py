"""Which rule goes where: the two rule sets of the original works (Zennit's "composites").

A model asks its composite for the rule of each linear layer and each residual addition; every other layer
(LayerNorm, GELU, softmax, dropout, tanh) passes relevance through unchanged in both sets.
"""
from dataclasses import dataclass
from typing import Callable

from . import rules


@dataclass(frozen=True)
class Composite:
    """The rules that differ between TE's ``layers_ours`` and ``layers_lrp``."""
    name: str
    linear: Callable
    add: Callable


CONSERVATIVE = Composite("conservative", linear=rules.linear_zplus, add=rules.add_normalised)
"""TE ``layers_ours``: z+ linear rule, normalised residual; used by ``transformer_attribution``."""

PLAIN_LRP = Composite("plain_lrp", linear=rules.linear_alpha1_separate, add=rules.gradient_x_input)
"""TE ``layers_lrp``: separately normalised alpha-1 linear rule, LRP-0 residual; ``full_lrp``, ``lrp_last_layer``."""
