"""Methods that propagate LRP relevance through the model (TE's two rule sets).

The relevance seed is the one-hot vector of the target class. ``R_A_b`` is the relevance of block ``b``'s
attention probabilities (after TE's halving at the ``A v`` product).
"""
import torch

from baselines.relevance.composites import CONSERVATIVE, PLAIN_LRP

from .common import eye_like, gradients, one_hot, query_row, recorded, rollout_row, row_normalise, target_classes


def transformer_attribution(model, inputs, class_index=None, start_layer=1, row_normalize=False):
    """Transformer attribution (Chefer et al., CVPR 2021), conservative rules (TE ``layers_ours``):

    ``Abar_b = mean_h clamp(G_b * R_A_b, 0)``; ``M_b = Abar_b + I`` (row-normalised only with ``row_normalize``,
    TE's BERT convention); result = the query row of ``M_{L-1} ... M_s``, ``s = start_layer``. Only blocks
    ``>= s`` are recorded and relevance stops there.
    """
    with recorded(model, inputs, with_grad=True, first_block=start_layer, fused_before=False) as (logits, maps):
        target = target_classes(logits, class_index)
        grads = gradients(logits, target, maps[start_layer:])
        with torch.no_grad():
            model.relprop(one_hot(logits, target), CONSERVATIVE, down_to_block=start_layer)
            cores = model.attention_cores[start_layer:]
            matrices = []
            for core, grad in zip(cores, grads):
                cam = grad.mul_(core.attn_relevance).clamp_(min=0).mean(dim=1)
                cam = cam + eye_like(cam)
                matrices.append(row_normalise(cam) if row_normalize else cam)
    return rollout_row(matrices, model.query_rows(inputs))


def lrp_last_layer(model, inputs, class_index=None, is_ablation=False):
    """Partial LRP (Voita et al.), plain LRP rules (TE ``layers_lrp``):
    ``mean_h clamp(R_A_last, 0)[query row]``; with ``is_ablation``, ``R_A_last * G_last`` instead of ``R_A_last``."""
    with recorded(model, inputs, with_grad=is_ablation, first_block=len(model.attention_cores) - 1) as (logits, maps):
        target = target_classes(logits, class_index)
        grad = gradients(logits, target, maps[-1:])[0] if is_ablation else 1.0
        with torch.no_grad():
            model.relprop(one_hot(logits, target), PLAIN_LRP, down_to_block=len(maps) - 1)
            cam = model.attention_cores[-1].attn_relevance * grad
            return query_row(cam.clamp(min=0).mean(dim=1), model.query_rows(inputs))


def full_lrp(model, inputs, class_index=None):
    """Full LRP to the input, plain LRP rules (TE ``layers_lrp``), z^B rule at the patch embedding, summed over
    colour channels: ``[B, H, W]`` pixel relevance."""
    with recorded(model, inputs, with_grad=False) as (logits, _):
        target = target_classes(logits, class_index)
        return model.relprop(one_hot(logits, target), PLAIN_LRP, to_input=True)
