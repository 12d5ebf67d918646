"""``create_model``: the single entry to every model that can be explained."""
import json
from pathlib import Path

from .bert import create_bert  # noqa: F401
from .clip import create_clip, is_clip_model
from .vit import (CONFIGS, ModelError, ViTConfig, VisionTransformer, _config_from_timm, load_weights,
                  read_checkpoint, remap_state_dict)

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "synthetic_vit"
"""The tiny ViT trained on the repository's synthetic localisation benchmark, shipped in ``pretrained/``."""


def _card(name):
    """The model card of a shipped model (``pretrained/NAME.json``) or of a card path, else None."""
    path = Path(name) if str(name).endswith(".json") else PRETRAINED_DIR / f"{name}.json"
    if not path.is_file():
        return None
    card = json.loads(path.read_text())
    if card.get("family", "vit") != "vit":
        return None
    config = ViTConfig(**card["config"], mean=tuple(card["mean"]), std=tuple(card["std"]),
                       class_names=tuple(card.get("class_names", ())))
    return config, path.with_suffix(".pth")


def create_model(name=None, weights=None, pretrained=False, device="cpu"):
    """A ViT in eval mode, or a CLIP (``clip.create_clip``) when ``name`` is a CLIP card (``synthetic_clip``) or an
    open_clip architecture (``ViT-B-32``); Hugging Face CLIP folders and bare CLIP checkpoints load through
    ``create_clip(hf_dir=...)`` / ``create_clip(weights=...)``.

    ``name``: a timm ViT name (``vit_base_patch16_224``, ``deit_small_patch16_224``, ...), a shipped model
    (``synthetic_vit``, the default) or a model-card JSON path. ``weights``: a local checkpoint (timm state dict,
    original JAX/DeiT ``.pth``, ``{"model": ...}`` wrapper, ``.safetensors``); the head size follows it.
    ``pretrained``: download the weights through timm. Without either, a timm name gives random weights.

    ``timm:NAME`` or ``hf:FOLDER``: any supported timm model or Hugging Face folder, explained through hooks
    (``baselines.models.hooked``; no LRP methods): ``weights`` / ``pretrained`` as above for timm, ``weights``
    replaces the folder's state dict.
    """
    name = name or DEFAULT_MODEL
    if str(name).startswith(("timm:", "hf:")):
        from .hooked import load_hooked
        return load_hooked(str(name), weights, pretrained).to(device)
    card = _card(name)
    if card is None and name not in CONFIGS and is_clip_model(name):
        if pretrained:
            raise ModelError("CLIP weights are not downloaded here; pass a local file with --weights")
        return create_clip(name, weights=weights, device=device)
    if card is not None:
        config, shipped = card
        weights = weights or shipped
    elif name in CONFIGS:
        config = CONFIGS[name]
    else:
        config = _config_from_timm(name)

    state = None
    if weights is not None:
        state = remap_state_dict(read_checkpoint(weights), config)
    elif pretrained:
        state = _download(name)
    if state is not None and "head.weight" in state:
        config = ViTConfig(**{**config.__dict__, "num_classes": state["head.weight"].shape[0]})
    model = VisionTransformer(config)
    if state is not None:
        load_weights(model, state)
    return model.eval().to(device)


def _download(name):
    import timm
    from huggingface_hub.utils import logging as hub_logging
    hub_logging.set_verbosity_error()
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as error:
        raise ModelError(f"cannot download pretrained weights for '{name}' through timm "
                         f"({str(error).splitlines()[0][:120]}); pass a local checkpoint with --weights") from None


__all__ = ["create_model", "create_clip", "ModelError", "VisionTransformer", "ViTConfig", "CONFIGS", "DEFAULT_MODEL"]
