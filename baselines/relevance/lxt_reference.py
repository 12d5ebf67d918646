"""LXT 2.1 (AttnLRP's reference code) as a comparison, kept in its box: the tests' oracle and the cost benchmark.

LXT patches classes for the whole process (``nn.GELU``, ``nn.LayerNorm``, ``nn.MultiheadAttention``, Zennit's
``BasicHook``): ``lxt_patched`` applies a patch map and restores every patched attribute on exit. ``import
lxt.efficient`` fails under transformers 5 (its BERT module imports the removed ``modeling_attn_mask_utils``):
``import_lxt_efficient`` registers an empty ``lxt.efficient.models`` package first (the ViT path needs no BERT).
"""
import sys
import types
from contextlib import contextmanager
from pathlib import Path


def import_lxt_efficient():
    """``lxt.efficient`` without its model registry (``monkey_patch`` then needs an explicit patch map)."""
    if "lxt.efficient" in sys.modules:
        return sys.modules["lxt.efficient"]
    import lxt
    models = types.ModuleType("lxt.efficient.models")
    models.__path__ = [str(Path(lxt.__file__).parent / "efficient" / "models")]
    models.get_default_map = None  # imported by lxt.efficient.core; unused with an explicit map
    sys.modules["lxt.efficient.models"] = models
    import lxt.efficient
    return lxt.efficient


def _saved(classes, names):
    return {(cls, name): cls.__dict__.get(name) for cls in classes for name in names}


def _restore(saved):
    for (cls, name), value in saved.items():
        if value is None:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, value)


@contextmanager
def lxt_patched(module, patch_map, zennit=False):
    """Inside, ``module``'s classes follow LXT's ``patch_map`` (and Zennit's hooks LXT's gradient x input
    form with ``zennit``); every patched class attribute is restored on exit."""
    efficient = import_lxt_efficient()
    classes = [cls for cls in patch_map if isinstance(cls, type)]
    saved = _saved(classes, ("forward", "original_forward"))
    if zennit:
        from zennit.core import BasicHook
        saved.update(_saved([BasicHook], ("forward", "backward")))
    try:
        efficient.monkey_patch(module, patch_map)
        if zennit:
            efficient.monkey_patch_zennit()
        yield
    finally:
        _restore(saved)


def torchvision_state(state, depth):
    """Our (timm-layout) ViT state dict in torchvision's ``VisionTransformer`` names (LXT's ViT)."""
    out = {"conv_proj.weight": state["patch_embed.proj.weight"], "conv_proj.bias": state["patch_embed.proj.bias"],
           "class_token": state["cls_token"], "encoder.pos_embedding": state["pos_embed"],
           "encoder.ln.weight": state["norm.weight"], "encoder.ln.bias": state["norm.bias"],
           "heads.head.weight": state["head.weight"], "heads.head.bias": state["head.bias"]}
    names = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.out_proj": "attn.proj", "mlp.0": "mlp.fc1",
             "mlp.3": "mlp.fc2"}
    for i in range(depth):
        ours, theirs = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for param in ("weight", "bias"):
            for tv, timm in names.items():
                out[f"{theirs}{tv}.{param}"] = state[f"{ours}{timm}.{param}"]
            out[f"{theirs}self_attention.in_proj_{param}"] = state[f"{ours}attn.qkv.{param}"]
    return out


def torchvision_vit(model):
    """torchvision's ``VisionTransformer`` with the weights of our ViT ``model`` (same logits)."""
    from torchvision.models import vision_transformer
    c = model.config
    tv = vision_transformer.VisionTransformer(
        image_size=c.img_size, patch_size=c.patch_size, num_layers=c.depth, num_heads=c.num_heads,
        hidden_dim=c.embed_dim, mlp_dim=int(c.embed_dim * c.mlp_ratio), num_classes=c.num_classes)
    tv.load_state_dict(torchvision_state(model.state_dict(), c.depth))
    return tv.to(next(model.parameters()).dtype).eval()
