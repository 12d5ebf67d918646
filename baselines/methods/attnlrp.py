"""AttnLRP and CP-LRP (gradient x input form, as LXT's efficient mode): one forward, one backward.

``R_x = x * dz_t/dx`` under the composite's modified backward (``relevance.gradient_composites``), ``z_t`` the
target logit (the relevance seed), ``x`` the model's input: the normalised pixels of a ViT (result ``[B, H, W]``,
summed over colour; ``patch_relevance`` sums it per patch) or the output of a text model's ``input_embedding``
(BERT's word embeddings, result ``[B, L]``, summed over the hidden size; the position and token-type embeddings
keep their own share, as in LXT's BERT example).
"""
import torch
import torch.nn.functional as F

from baselines.relevance.gradient_composites import ATTN_LRP, CP_LRP, modified_gradients

from .common import target_classes, target_logit


def input_relevance(model, inputs, composite, class_index=None):
    """``sum over channels of x * grad_x z_t`` under ``composite``, per sample; weights frozen."""
    embedding = getattr(model, "input_embedding", None)
    captured = []

    def capture(module, args, out):
        leaf = out.detach().requires_grad_()
        captured.append(leaf)
        return leaf

    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    handle = embedding.register_forward_hook(capture) if embedding is not None else None
    try:
        with modified_gradients(model, composite), torch.enable_grad():
            if embedding is None:
                inputs = inputs.detach().requires_grad_()
                captured.append(inputs)
            logits = model(inputs)
            target = target_classes(logits, class_index)
            x = captured[0]
            (grad,) = torch.autograd.grad(target_logit(logits, target), x)
    finally:
        if handle is not None:
            handle.remove()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    channels = -1 if embedding is not None else 1
    return (x.detach() * grad).sum(dim=channels)


def attnlrp(model, inputs, class_index=None, gamma=0.0, conv_gamma=0.0):
    """AttnLRP (Achtibat et al., ICML 2024): epsilon-LRP (epsilon 0, bias-aware) on linear layers, identity rule on
    GELU / tanh, LayerNorm with constant variance, uniform rule on ``q k^T`` and ``A v`` (gradients of q, k, v
    divided by 4, 4, 2), softmax rule ``R_s = s * (R_A - A * sum R_A)``. ``gamma`` / ``conv_gamma``: LRP-gamma
    on the linear layers outside attention / the patch embedding (0: off)."""
    composite = ATTN_LRP.with_options(gamma=gamma, conv_gamma=conv_gamma)
    return input_relevance(model, inputs, composite, class_index)


def cp_lrp(model, inputs, class_index=None, gamma=0.0, conv_gamma=0.0):
    """CP-LRP (Ali et al., ICML 2022; AttnLRP's baseline): as ``attnlrp`` but q and k detached, so the attention
    probabilities are constant weights and the values take the whole relevance (LXT's ViT recipe with
    ``gamma``, ``conv_gamma``)."""
    composite = CP_LRP.with_options(gamma=gamma, conv_gamma=conv_gamma)
    return input_relevance(model, inputs, composite, class_index)


def patch_relevance(pixel_relevance, patch_size):
    """Pixel relevance ``[B, H, W]`` -> per-patch sums ``[B, H / p, W / p]``."""
    return F.avg_pool2d(pixel_relevance.unsqueeze(1), patch_size).squeeze(1) * patch_size ** 2
