"""Vision Transformer (ViT / DeiT) built from the shared relevance layers.

Same parameters, key names and arithmetic as timm's ``VisionTransformer`` (class token pooling, pre-norm blocks,
LayerNorm eps 1e-6 everywhere, including the final norm), so timm state dicts load strictly and the logits match
timm's. Inside ``recording(model)`` every block keeps its attention probabilities, its input and its values, and
``relprop`` sends relevance from the logits back through the blocks (and to the pixels).
"""
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from baselines.cli import UserError, first_line
from baselines.methods.interface import LayerModel
from baselines.relevance import layers as rl

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ViTConfig:
    """Architecture and preprocessing of one ViT."""
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    img_size: int = 224
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    qkv_bias: bool = True
    mean: tuple = HALF
    std: tuple = HALF
    class_names: tuple = field(default=(), compare=False)


def _cfg(dim, depth, heads, patch=16, mean=HALF, std=HALF, size=224):
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch, mean=mean, std=std,
                     img_size=size)


CONFIGS = {
    "vit_tiny_patch16_224": _cfg(192, 12, 3),
    "vit_small_patch16_224": _cfg(384, 12, 6),
    "vit_small_patch32_224": _cfg(384, 12, 6, patch=32),
    "vit_base_patch16_224": _cfg(768, 12, 12),
    "vit_base_patch32_224": _cfg(768, 12, 12, patch=32),
    "vit_large_patch16_224": _cfg(1024, 24, 16),
    "vit_large_patch32_224": _cfg(1024, 24, 16, patch=32),
    "vit_base_patch16_384": _cfg(768, 12, 12, size=384),
    "deit_tiny_patch16_224": _cfg(192, 12, 3, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "deit_small_patch16_224": _cfg(384, 12, 6, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "deit_base_patch16_224": _cfg(768, 12, 12, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


class Mlp(nn.Module):
    def __init__(self, dim, hidden, act_layer=rl.GELU):
        super().__init__()
        self.fc1 = rl.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = rl.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def relprop(self, R, composite):
        return self.fc1.relprop(self.act.relprop(self.fc2.relprop(R, composite), composite), composite)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout ``(qkv, heads, head_dim)``)."""

    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = rl.Linear(dim, dim * 3, bias=qkv_bias)
        self.core = rl.AttentionCore(self.head_dim ** -0.5)
        self.proj = rl.Linear(dim, dim)

    def forward(self, x, mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = self.core(q, k, v, mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def value_projection(self):
        """``v W_o^T`` (heads concatenated, no bias) of the recorded forward: Beyond Intuition's token-wise term."""
        v = self.core.saved["v"]
        B, H, N, d = v.shape
        return v.transpose(1, 2).reshape(B, N, H * d) @ self.proj.weight.t()

    def relprop(self, R, composite, stop_at_attention=False):
        B, N, C = R.shape
        R = self.proj.relprop(R, composite).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        R_qkv = self.core.relprop(R, composite, stop_at_attention)
        if stop_at_attention:
            return None
        merged = R.new_empty(B, N, 3, self.num_heads, self.head_dim)
        for index, part in enumerate(R_qkv):
            merged[:, :, index] = part.transpose(1, 2)
        return self.qkv.relprop(merged.view(B, N, 3 * C), composite)


class Block(nn.Module):
    """Pre-norm block: ``x = x + attn(norm1(x))``, ``x = x + mlp(norm2(x))`` (timm's; CLIP's with ``eps`` 1e-5,
    its activation and, in the text tower, an additive causal ``mask``)."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, eps=1e-6, act_layer=rl.GELU):
        super().__init__()
        self.clone1 = rl.Clone()
        self.norm1 = rl.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.add1 = rl.Add()
        self.clone2 = rl.Clone()
        self.norm2 = rl.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.add2 = rl.Add()

    def forward(self, x, mask=None):
        x = self.add1(self.clone1(x), self.attn(self.norm1(x), mask))
        return self.add2(self.clone2(x), self.mlp(self.norm2(x)))

    @property
    def input(self):
        """The block's input (the residual stream before ``norm1``) of the recorded forward."""
        return self.clone1.saved["x"]

    def relprop(self, R, composite, stop_at_attention=False):
        R_skip, R_mlp = self.add2.relprop(R, composite)
        R_mlp = self.norm2.relprop(self.mlp.relprop(R_mlp, composite), composite)
        R = self.clone2.relprop([R_skip, R_mlp], composite)
        R_skip, R_attn = self.add1.relprop(R, composite)
        R_attn = self.attn.relprop(R_attn, composite, stop_at_attention)
        if stop_at_attention:
            return None
        return self.clone1.relprop([R_skip, self.norm1.relprop(R_attn, composite)], composite)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, dim):
        super().__init__()
        self.proj = rl.PatchConv(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)

    def relprop(self, R, grid):
        B, N, C = R.shape
        return self.proj.relprop(R.transpose(1, 2).reshape(B, C, *grid), None)


class VisionTransformer(LayerModel, nn.Module):
    """ViT classifier: patch embedding, class token, position embedding, blocks, final norm, CLS-token head."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        c = config
        self.config = c
        self.grid = (c.img_size // c.patch_size,) * 2
        self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, c.embed_dim))
        self.add_pos = rl.Add()
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias) for _ in range(c.depth))
        self.norm = rl.LayerNorm(c.embed_dim, eps=1e-6)
        self.pool = rl.TokenSelect(0)
        self.head = rl.Linear(c.embed_dim, c.num_classes)

    mean = property(lambda self: self.config.mean)
    std = property(lambda self: self.config.std)
    num_classes = property(lambda self: self.config.num_classes)
    patch_size = property(lambda self: self.config.patch_size)
    img_size = property(lambda self: self.config.img_size)
    class_names = property(lambda self: self.config.class_names)
    image_tokens = slice(1, None)
    """The columns of the CLS row that belong to image patches."""

    def forward(self, images, input_scale=None):
        """Logits ``[B, num_classes]`` of normalised images; ``input_scale`` ``[B]`` multiplies the images first
        (the path of integrated gradients)."""
        if input_scale is not None:
            images = images * input_scale.view(-1, 1, 1, 1)
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.add_pos(x, self.pos_embed.expand(x.shape[0], -1, -1))
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(self.norm(x)))

    @property
    def attention_cores(self):
        return [block.attn.core for block in self.blocks]

    def relprop(self, R, composite, down_to_block=0, to_input=False):
        """Relevance of the logits ``R`` ``[B, num_classes]`` sent back through the blocks.

        Stops at the attention of block ``down_to_block`` (each reached block keeps ``core.attn_relevance``),
        or, with ``to_input``, continues to the pixels and returns ``[B, H, W]`` (summed over colour channels).
        """
        R = self.norm.relprop(self.pool.relprop(self.head.relprop(R, composite), composite), composite)
        for index in range(len(self.blocks) - 1, down_to_block - 1, -1):
            stop = index == down_to_block and not to_input
            R = self.blocks[index].relprop(R, composite, stop_at_attention=stop)
        if not to_input:
            return None
        R_tokens, _ = self.add_pos.relprop(R, composite)
        return self.patch_embed.relprop(R_tokens[:, 1:], self.grid).sum(dim=1)

    def token_map(self, row):
        """The CLS row over all tokens ``[B, N]`` -> the patch-token map ``[B, grid_h, grid_w]``."""
        return row[:, 1:].reshape(row.shape[0], *self.grid)


class ModelError(UserError):
    """A model name, checkpoint or download that cannot be used; the message is one line for the user."""


def _config_from_timm(name):
    """The config of any other timm ViT name that our architecture covers (class-token pooling, plain blocks)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    try:
        ref = timm.create_model(name, pretrained=False)
    except Exception as error:
        raise ModelError(f"unknown model '{name}': neither a timm ViT name nor a model card ({error})") from None
    plain = (isinstance(ref, TimmViT) and ref.global_pool == "token" and ref.num_prefix_tokens == 1
             and isinstance(ref.norm_pre, nn.Identity) and isinstance(ref.fc_norm, nn.Identity)
             and isinstance(ref.blocks[0].ls1, nn.Identity))
    if not plain:
        raise ModelError(f"model '{name}' is not a plain class-token ViT that this repository can explain")
    cfg = ref.pretrained_cfg
    return ViTConfig(embed_dim=ref.embed_dim, depth=len(ref.blocks), num_heads=ref.blocks[0].attn.num_heads,
                     patch_size=ref.patch_embed.patch_size[0], img_size=ref.patch_embed.img_size[0],
                     mlp_ratio=ref.blocks[0].mlp.fc1.out_features / ref.embed_dim, num_classes=ref.num_classes,
                     qkv_bias=ref.blocks[0].attn.qkv.bias is not None, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


def read_checkpoint(path):
    """A state dict from a timm / original JAX / DeiT checkpoint (``.pth``, ``.safetensors``, ``{"model": ...}``)."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except Exception as error:
        raise ModelError(f"cannot read checkpoint {path}: {first_line(error)}") from None
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def remap_state_dict(state, config):
    """timm-style keys from the original checkpoints: the JAX patch filter stored as a matrix becomes a conv."""
    if "dist_token" in state:
        raise ModelError("distilled DeiT checkpoints (with a distillation token) are not supported")
    weight = state.get("patch_embed.proj.weight")
    if weight is not None and weight.dim() == 2:
        state = dict(state, **{"patch_embed.proj.weight": weight.reshape(weight.shape[0], 3, config.patch_size,
                                                                         config.patch_size)})
    return state


def load_weights(model, state):
    """Strict loading with a one-line error naming the keys or shapes that do not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise ModelError("checkpoint does not fit the model (" + "; ".join(parts) + ")")
    model.load_state_dict(state)
    return model
