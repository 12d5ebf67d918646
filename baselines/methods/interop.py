"""A Quantus ``explain_func`` over every method and model: numpy in, numpy out, maps shaped like the inputs
(``common.input_maps``; not normalised, Quantus normalises as it is told to)."""
import numpy as np
import torch

from .common import input_maps
from .registry import METHODS, explain, resolve


def quantus_explain_func(model, inputs, targets, method="generic_attribution", device=None, pad_token_id=0,
                         **options):
    """``quantus.Metric(...)(model, x_batch, y_batch, explain_func=quantus_explain_func,
    explain_func_kwargs={"method": "rollout", ...})``.

    ``inputs``: numpy images ``[B, C, H, W]`` (normalised as the model expects), or token ids ``[B, L]`` of a text
    model (``pad_token_id`` marks padding). ``targets``: the class of each sample ``[B]``. ``options``: the method's
    options. Returns float32 numpy maps, ``[B, 1, H, W]`` for images and ``[B, L]`` for texts.
    """
    parameter = next(model.parameters())
    device = device or parameter.device
    batch = torch.as_tensor(np.asarray(inputs), device=device)
    if batch.is_floating_point():
        batch = batch.to(parameter.dtype)
    else:
        batch = {"input_ids": batch.long(), "attention_mask": (batch != pad_token_id).long()}
    target = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
    raw = explain(model, batch, method, class_index=target, **options)
    return input_maps(raw, batch, METHODS[resolve(method)].pixel_level).detach().float().cpu().numpy()


__all__ = ["quantus_explain_func"]
