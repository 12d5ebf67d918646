"""The model interface: everything a method may read from a model, written down once.

Three levels, each a ``typing.Protocol``; a method names the one it needs (``Method.needs`` in the registry) and
``explain`` refuses a model that lacks it in one line:

* ``AttentionModel``: a recorded forward with attention maps and gradients. Enough for ``rollout``,
  ``attn_last_layer``, ``attn_gradcam``, ``generic_attribution``, ``grad_rollout``. Our own ViT/BERT/CLIP
  copies provide it, and so can a model wrapped through hooks.
* ``ValueModel``: also each block's input and its value-times-output-projection (``beyond_intuition_t``).
* ``RelevanceModel``: also ``relprop``, LRP relevance sent back through every layer (``transformer_attribution``,
  ``lrp_last_layer``, ``full_lrp``), and the layers that ``attnlrp`` / ``cp_lrp`` hook their gradient rules onto:
  only models built from ``baselines.relevance.layers``.

Notation: ``B`` samples, ``H`` heads, ``N`` tokens. A method explains one query row of the attention maps per
sample (``query_rows``): the class token's row 0 of a ViT or BERT, the EOT token of a CLIP text, the last position
of a decoder language model, or a weighted mean of the rows an average-pooled head reads.
"""
from contextlib import AbstractContextManager
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import torch

from baselines.relevance.layers import recording


@runtime_checkable
class AttentionCore(Protocol):
    """One block's attention. While recording, ``attn`` is the block's attention probabilities ``[B, H, N, N]``
    (requiring grad when gradients are enabled, so methods can differentiate the logits with respect to them)."""

    @property
    def attn(self) -> torch.Tensor: ...


@runtime_checkable
class AttentionModel(Protocol):
    """What every method may read."""

    blocks: Sequence[torch.nn.Module]
    """The blocks in order; ``record(first_block)`` records those from ``first_block`` on."""

    @property
    def attention_cores(self) -> Sequence[AttentionCore]:
        """One per block, same order as ``blocks``."""

    @property
    def num_classes(self) -> int: ...

    image_tokens: slice
    """The columns of a query row that are input tokens (a ViT's patches; every token of a text)."""

    method_defaults: dict
    """Per method, the options that reproduce the original code for this model family (may be empty)."""

    def __call__(self, inputs: Any, input_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``[B, C]``. ``input_scale`` ``[B]`` scales the input along the integrated-gradient path."""

    def parameters(self): ...

    def record(self, first_block: int = 0, fused_before: bool = True) -> AbstractContextManager:
        """Inside, forwards record the attention maps of blocks ``>= first_block`` (earlier blocks may keep their
        fused kernels; with ``fused_before=False`` they compute attention as the recorded blocks do); everything
        recorded is dropped on exit."""

    def query_rows(self, inputs: Any) -> torch.Tensor:
        """``[B]`` long: the row of the attention maps that each sample's explanation reads; or ``[B, N]`` float
        weights over the rows when the head pools several tokens (average pooling: ``1/n`` on each pooled token;
        a distilled DeiT: ``1/2`` on its class and distillation tokens). Methods read ``sum_i w_i row_i``."""

    def valid_tokens(self, inputs: Any) -> Optional[torch.Tensor]:
        """``[B, N]`` bool: tokens that belong to the sample (not padding), or None when all do."""

    def token_map(self, row: torch.Tensor) -> torch.Tensor:
        """A query row over all tokens ``[B, N]`` -> the method's output (a patch grid, the tokens, ...)."""


@runtime_checkable
class ValueModel(AttentionModel, Protocol):
    """Also what Beyond Intuition's token-wise term reads from a recorded block."""

    def value_terms(self, index: int) -> tuple:
        """``(z, v W_o^T)`` of block ``index`` in the recorded forward, both ``[B, N, D]``: the residual stream
        entering the block (before its norm) and the values times the output projection (heads concatenated,
        no bias)."""


@runtime_checkable
class RelevanceModel(AttentionModel, Protocol):
    """Also LRP: after ``relprop`` each reached core holds ``attn_relevance`` ``[B, H, N, N]``."""

    def relprop(self, R: torch.Tensor, composite: Any, down_to_block: int = 0,
                to_input: bool = False) -> Optional[torch.Tensor]:
        """Relevance ``R`` of the logits ``[B, C]`` sent back to the attention of block ``down_to_block``, or
        with ``to_input`` to the input (returned, summed over channels / the hidden size)."""

    input_embedding: Optional[torch.nn.Module]
    """Where gradient x input methods (``attnlrp``, ``cp_lrp``) take the input: the module whose output is the
    explained input of a text model (BERT's word embeddings); None when the input tensor itself is (pixels)."""


PROTOCOLS = {"attention": AttentionModel, "values": ValueModel, "relevance": RelevanceModel}
"""``Method.needs`` -> the protocol a model must satisfy."""


class LayerModel:
    """Mixin for models built from ``baselines.relevance.layers`` (our ViT, BERT, CLIP towers): recording through
    the layers, query row 0 (the class token), every token valid, no per-family defaults. Each block has
    ``input`` and ``attn.value_projection()``."""

    method_defaults = {}
    input_embedding = None

    def record(self, first_block=0, fused_before=True):
        return recording(self, first_block, fused_before)

    def value_terms(self, index):
        block = self.blocks[index]
        return block.input, block.attn.value_projection()

    def query_rows(self, inputs):
        tensor = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
        return torch.zeros(tensor.shape[0], dtype=torch.long, device=tensor.device)

    def valid_tokens(self, inputs):
        return None
