"""Small ViTs for tests: a timm model and ours with the same weights."""
import timm.models.vision_transformer as timm_vit
import torch

from baselines.models.vit import ViTConfig, VisionTransformer


def timm_tiny(depth=8, dim=32, heads=4, classes=5, img=64, patch=16, seed=0, offset=0.0):
    """A small timm ViT with lively random weights (std 0.2, LayerNorm gains near 1).

    ``offset`` > 0 shifts the biases and embeddings up, which keeps the LRP denominators away from zero (the
    originals' rules amplify rounding about 10^4 times near zero sums)."""
    torch.manual_seed(seed)
    model = timm_vit.VisionTransformer(img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                                       num_classes=classes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias") or name in ("cls_token", "pos_embed"):
                p.copy_(0.1 * torch.randn_like(p) + offset)
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def ours_from(timm_model, num_classes=None):
    """Our ViT with the timm model's weights."""
    t = timm_model
    config = ViTConfig(embed_dim=t.embed_dim, depth=len(t.blocks), num_heads=t.blocks[0].attn.num_heads,
                       patch_size=t.patch_embed.patch_size[0], img_size=t.patch_embed.img_size[0],
                       num_classes=t.num_classes)
    model = VisionTransformer(config)
    model.load_state_dict(t.state_dict())
    return model.eval()
