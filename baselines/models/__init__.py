"""``create_model``: the single entry to every model that can be explained."""
from .bert import create_bert  # noqa: F401
from .cards import PRETRAINED_DIR, card_config, read_card  # noqa: F401 (PRETRAINED_DIR re-exported)
from .clip import clip_card, create_clip, is_clip_model
from .vit import (CONFIGS, ModelError, ViTConfig, VisionTransformer, _config_from_timm, load_weights,
                  read_checkpoint, remap_state_dict)

DEFAULT_MODEL = "synthetic_vit"
"""The tiny ViT trained on the repository's synthetic localisation benchmark, shipped in ``pretrained/``."""


def _card(name):
    """``(config, weights path)`` of a ViT model card (shipped name or card path), else None."""
    found = read_card(name)
    if found is None or found[0].get("family", "vit") != "vit":
        return None
    card, path = found
    return card_config(card, path, ViTConfig), path.with_suffix(".pth")


PAPER_WEIGHTS = {
    "vit_base_patch16_224": "vit_base_patch16_224.orig_in21k_ft_in1k",
    "deit_base_patch16_224": "deit_base_patch16_224.fb_in1k",
}
"""The weights the papers used, as timm ``architecture.tag``: TE, TI and vit-explain load the original JAX ViT-B/16
(``jx_vit_base_p16_224-80ecf9dd.pth``, ImageNet-21k pretrained, 1k fine-tuned; timm's default tag for the name is
now another checkpoint), and Facebook's DeiT-B."""


def pretrained_name(name):
    """What ``--pretrained`` downloads for ``name``: an explicit ``name.tag`` as given, else the papers' weights
    (``PAPER_WEIGHTS``), else timm's default tag."""
    return name if "." in name else PAPER_WEIGHTS.get(name, name)


def create_model(name=None, weights=None, pretrained=False, device="cpu", require_weights=False):
    """A ViT in eval mode, or a CLIP (``clip.create_clip``) when ``name`` is a CLIP card (``synthetic_clip``) or an
    open_clip architecture (``ViT-B-32``); Hugging Face CLIP folders and bare CLIP checkpoints load through
    ``create_clip(hf_dir=...)`` / ``create_clip(weights=...)``.

    ``name``: a timm ViT name (``vit_base_patch16_224``, ``deit_small_patch16_224``, ``name.tag``, ...), a
    shipped model (``synthetic_vit``, the default) or a model-card JSON path. ``weights``: a local checkpoint (timm
    state dict, original JAX/DeiT ``.pth``, ``{"model": ...}`` wrapper, ``.safetensors``); the head size follows
    it. ``pretrained``: download through timm the weights ``pretrained_name(name)`` (the papers' for ViT-B/16 and
    DeiT-B). Without either, a timm name gives random weights, or a ``ModelError`` with ``require_weights``.
    The model's ``weights_source`` says which weights it holds (a file, ``timm:NAME.TAG`` or ``random``).

    ``timm:NAME`` or ``hf:FOLDER``: any supported timm model or Hugging Face folder, explained through hooks
    (``baselines.models.hooked``; no LRP methods): ``weights`` / ``pretrained`` as above for timm, ``weights``
    replaces the folder's state dict.
    """
    name = name or DEFAULT_MODEL
    if str(name).startswith(("timm:", "hf:")):
        return _hooked(str(name), weights, pretrained, require_weights).to(device)
    card = _card(name)
    if card is None and name not in CONFIGS and is_clip_model(name):
        if pretrained:
            raise ModelError("CLIP weights are not downloaded here; pass a local file with --weights")
        shipped = clip_card(name)
        if require_weights and weights is None and shipped is None:
            raise ModelError(no_weights_message(name))
        model = create_clip(name, weights=weights, device=device)
        model.weights_source = (str(weights) if weights is not None else
                                f"card:{shipped[1]}" if shipped is not None else "random")
        return model
    if card is not None:
        if pretrained:
            raise ModelError(f"--pretrained downloads timm weights; '{name}' is a model card with its own weights")
        config, shipped = card
        weights = weights or shipped
    else:
        architecture = name.partition(".")[0]
        config = CONFIGS[architecture] if architecture in CONFIGS else _config_from_timm(architecture)

    state, source = None, "random"
    if weights is not None:
        state, source = remap_state_dict(read_checkpoint(weights), config), str(weights)
    elif pretrained:
        state, source = _download(pretrained_name(name)), f"timm:{pretrained_name(name)}"
    elif require_weights:
        raise ModelError(no_weights_message(name))
    if state is not None and "head.weight" in state:
        config = ViTConfig(**{**config.__dict__, "num_classes": state["head.weight"].shape[0]})
    model = VisionTransformer(config)
    if state is not None:
        load_weights(model, state)
    model.weights_source = source
    return model.eval().to(device)


def _hooked(spec, weights, pretrained, require_weights):
    from .hooked import load_hooked
    source = str(weights) if weights is not None else spec
    if spec.startswith("timm:") and weights is None:
        if pretrained:
            spec = source = "timm:" + pretrained_name(spec[len("timm:"):])
        elif require_weights:
            raise ModelError(no_weights_message(spec))
        else:
            source = "random"
    model = load_hooked(spec, weights, pretrained)
    model.weights_source = source
    return model


def no_weights_message(name):
    return (f"model '{name}' has no weights and results from random weights are meaningless: pass --pretrained "
            f"(timm's {pretrained_name(name)}) or --weights FILE, or --random-weights to run anyway")


def _download(name):
    import timm
    from huggingface_hub.utils import logging as hub_logging
    hub_logging.set_verbosity_error()
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as error:
        raise ModelError(f"cannot download pretrained weights for '{name}' through timm "
                         f"({str(error).splitlines()[0][:120]}); pass a local checkpoint with --weights") from None


__all__ = ["create_model", "create_clip", "PAPER_WEIGHTS", "pretrained_name", "ModelError", "VisionTransformer",
           "ViTConfig", "CONFIGS", "DEFAULT_MODEL"]
