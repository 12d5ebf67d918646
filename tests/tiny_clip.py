"""Small CLIPs for tests: an open_clip model and ours with the same weights, and token ids for them."""
import open_clip
import torch

from baselines.models.clip import CLIPConfig, WordTokenizer, clip_from_state, openai_layout

VOCAB = 50
CONTEXT = 12


def open_clip_tiny(quick_gelu=True, seed=0, depth=2, lively=False, offset=0.0, heads=2):
    """A small open_clip CLIP (images 64 x 64, patch 16, widths 64 with 2 heads, 12-token context, vocabulary 50).

    ``lively`` redraws the weights (std 0.2, LayerNorm gains near 1, biases 0.1 + ``offset``) so that attention
    maps are far from uniform and, with ``offset`` > 0, the LRP denominators stay away from zero."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(embed_dim=16, quick_gelu=quick_gelu,
                           vision_cfg=dict(image_size=64, patch_size=16, width=64, layers=depth, head_width=64 // heads),
                           text_cfg=dict(context_length=CONTEXT, vocab_size=VOCAB, width=64, heads=heads, layers=depth))
    if lively:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name == "logit_scale":
                    continue
                if ("ln_" in name or "ln_final" in name) and name.endswith("weight"):
                    p.copy_(1 + 0.1 * torch.randn_like(p))
                elif name.endswith("bias") or "embedding" in name:
                    p.copy_(0.1 * torch.randn_like(p) + offset)
                else:
                    p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def ours_from(reference, quick_gelu=True):
    """Our CLIP with the open_clip model's weights."""
    base = CLIPConfig(vision_width=64, vision_heads=2, text_width=64, text_heads=2, quick_gelu=quick_gelu)
    words = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 4)] + ["<start>", "<end>"]
    return clip_from_state(openai_layout(reference.state_dict()), base, tokenizer=WordTokenizer(words, CONTEXT))


def token_ids(lengths, seed=0):
    """``[T, CONTEXT]`` ids: start token, random words, the end token (the largest id) at ``length - 1``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), CONTEXT, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, 0] = VOCAB - 2
        ids[row, 1:length - 1] = torch.randint(1, VOCAB - 2, (length - 2,), generator=generator)
        ids[row, length - 1] = VOCAB - 1
    return ids
