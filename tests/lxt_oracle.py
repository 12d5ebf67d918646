"""LXT 2.1 as an oracle, run in its own process (its patches replace GELU, LayerNorm, attention and Zennit methods
for the whole process): ``python tests/lxt_oracle.py jobs.pt results.pt``.

``jobs.pt`` (written by ``run_oracle``): a list of ``{"kind": "vit" | "hf_vit" | "bert" | "clip", "state": ...,
"config": ..., "inputs": ..., "target": [B], "cp": bool (hf_vit, bert), "gamma", "conv_gamma" (vit)}``; the results are
the input relevances, float64.

* ``vit``: LXT's own ViT path, CP-LRP on torchvision's ``vision_transformer`` (``lxt.efficient.models.vit_torch``),
  with Zennit's ``Gamma`` on ``Conv2d`` / ``Linear`` through LXT's Zennit patch when gamma > 0 (LXT's ViT example).
  ``import lxt.efficient`` needs an empty ``lxt.efficient.models`` package first (``lxt_reference``).
* ``hf_vit``: LXT ships no AttnLRP map for a ViT (only CP-LRP on torchvision), so its efficient rules are applied
  to transformers' ViT as to BERT below.
* ``clip``: LXT's efficient mode has no CLIP; its CP-LRP patches (torch's ``MultiheadAttention`` with q and k
  detached, ``layer_norm_forward``, the identity rule on GELU / quick-GELU) on an open_clip model, the embedding
  norm held constant in the similarity (LXT has no rule for it; ours is that).
* ``bert``: LXT's BERT module cannot import under transformers 5 (it copies an old ``modeling_bert``), so LXT's
  efficient rules are applied to transformers' current BERT at the places LXT's copy puts them: its attention
  wrapper on ``eager_attention_forward`` (gradients of q, k, v / 4, 4, 2; with ``cp``, q and k detached), its
  ``layer_norm_forward`` on ``nn.LayerNorm``, its identity rule on the GELU activation and the pooler's tanh.
"""
import subprocess
import sys
from pathlib import Path

import torch

from baselines.relevance.lxt_reference import import_lxt_efficient, torchvision_state


def run_oracle(jobs, tmp_path):
    """Run ``jobs`` in one fresh interpreter; the relevances they return."""
    source, result = tmp_path / "jobs.pt", tmp_path / "results.pt"
    torch.save(jobs, source)
    subprocess.run([sys.executable, __file__, str(source), str(result)], check=True, cwd=Path(__file__).parent,
                   env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                        "PATH": "/usr/bin:/bin"})
    return torch.load(result, weights_only=True)


ZENNIT_PATCHED = []


def vit_relevance(job):
    import_lxt_efficient()
    from lxt.efficient import monkey_patch, monkey_patch_zennit
    from lxt.efficient.models.vit_torch import cp_LRP
    from torchvision.models import vision_transformer
    c = job["config"]
    if not hasattr(vision_transformer.nn.GELU, "original_forward"):
        monkey_patch(vision_transformer, cp_LRP)
    model = vision_transformer.VisionTransformer(
        image_size=c["img_size"], patch_size=c["patch_size"], num_layers=c["depth"], num_heads=c["num_heads"],
        hidden_dim=c["embed_dim"], mlp_dim=int(c["embed_dim"] * c["mlp_ratio"]), num_classes=c["num_classes"])
    model.load_state_dict(torchvision_state(job["state"], c["depth"]))
    model = model.double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if job["gamma"] or job["conv_gamma"]:
        from zennit.composites import LayerMapComposite
        from zennit.rules import Gamma
        if not ZENNIT_PATCHED:
            monkey_patch_zennit()
            ZENNIT_PATCHED.append(True)
        composite = LayerMapComposite([(torch.nn.Conv2d, Gamma(job["conv_gamma"])),
                                       (torch.nn.Linear, Gamma(job["gamma"]))])
        composite.register(model)
    x = job["inputs"].double().clone().requires_grad_()
    logits = model(x)
    logits.gather(1, job["target"][:, None]).sum().backward()
    return (x * x.grad).sum(1).detach()


HF_VARIANT = {}
"""``{"cp": bool}``, the attention rule of the patched transformers models (True: CP-LRP), once patched."""


def _patch_transformers():
    """LXT's rules on transformers' BERT and ViT, the attention variant chosen by ``HF_VARIANT``."""
    import_lxt_efficient()
    import lxt.efficient.patches as patches
    import transformers.models.bert.modeling_bert as modeling_bert
    import transformers.models.vit.modeling_vit as modeling_vit
    from transformers.activations import GELUActivation
    HF_VARIANT["cp"] = False
    for module in (modeling_bert, modeling_vit):
        original = module.eager_attention_forward
        variants = {False: patches.wrap_attention_forward(original),
                    True: patches.cp_wrap_attention_forward(original)}
        module.eager_attention_forward = (lambda variants: lambda *args, **kwargs:
                                          variants[HF_VARIANT["cp"]](*args, **kwargs))(variants)
    if not hasattr(torch.nn.LayerNorm, "original_forward"):
        patches.patch_method(patches.layer_norm_forward, torch.nn.LayerNorm)
    for activation in (GELUActivation, torch.nn.Tanh):
        patches.patch_method(patches.non_linear_forward, activation, keep_original=True)


def hf_vit_state(state, depth):
    """Our (timm-layout) ViT state dict in transformers' ``ViTForImageClassification`` names."""
    out = {"vit.embeddings.cls_token": state["cls_token"], "vit.embeddings.position_embeddings": state["pos_embed"],
           "vit.layernorm.weight": state["norm.weight"], "vit.layernorm.bias": state["norm.bias"],
           "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"]}
    names = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for param in ("weight", "bias"):
        out[f"vit.embeddings.patch_embeddings.projection.{param}"] = state[f"patch_embed.proj.{param}"]
        for i in range(depth):
            ours, theirs = f"blocks.{i}.", f"vit.layers.{i}."
            for hf, timm in names.items():
                out[f"{theirs}{hf}.{param}"] = state[f"{ours}{timm}.{param}"]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), state[f"{ours}attn.qkv.{param}"].chunk(3)):
                out[f"{theirs}attention.{name}.{param}"] = part
    return out


def hf_vit_relevance(job):
    from transformers import ViTConfig, ViTForImageClassification
    if not HF_VARIANT:
        _patch_transformers()
    HF_VARIANT["cp"] = job["cp"]
    c = job["config"]
    config = ViTConfig(hidden_size=c["embed_dim"], num_hidden_layers=c["depth"], num_attention_heads=c["num_heads"],
                       intermediate_size=int(c["embed_dim"] * c["mlp_ratio"]), image_size=c["img_size"],
                       patch_size=c["patch_size"], num_labels=c["num_classes"], layer_norm_eps=1e-6,
                       attn_implementation="eager")
    model = ViTForImageClassification(config)
    model.load_state_dict(hf_vit_state(job["state"], c["depth"]))
    model = model.double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = job["inputs"].double().clone().requires_grad_()
    logits = model(pixel_values=x).logits
    logits.gather(1, job["target"][:, None]).sum().backward()
    return (x * x.grad).sum(1).detach()


def bert_relevance(job):
    from transformers import BertConfig, BertForSequenceClassification
    if not HF_VARIANT:
        _patch_transformers()
    HF_VARIANT["cp"] = job["cp"]
    config = BertConfig(**job["config"])
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config)
    model.load_state_dict(job["state"], strict=False)
    model = model.double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    inputs = job["inputs"]
    embeds = model.bert.embeddings.word_embeddings(inputs["input_ids"]).detach().requires_grad_()
    logits = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    logits.gather(1, job["target"][:, None]).sum().backward()
    return (embeds * embeds.grad).sum(-1).detach()


def clip_relevance(job):
    import lxt.efficient.patches as patches
    from open_clip import transformer
    from tiny_clip import open_clip_tiny
    import_lxt_efficient()
    patched = [(patches.cp_multi_head_attention_forward, torch.nn.MultiheadAttention, True),
               (patches.layer_norm_forward, torch.nn.LayerNorm, False),
               (patches.layer_norm_forward, transformer.LayerNorm, False),
               (patches.non_linear_forward, torch.nn.GELU, True),
               (patches.non_linear_forward, transformer.QuickGELU, True)]
    for fn, cls, keep in patched:
        if "original_forward" not in vars(cls) and getattr(cls.forward, "__module__", "") != fn.__module__:
            patches.patch_method(fn, cls, keep_original=keep)
    model = open_clip_tiny(quick_gelu=job["quick_gelu"])
    model.load_state_dict(job["state"])
    model = model.double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images, ids = job["images"].double(), job["ids"]
    leaves = []

    def leaf(module, args, out):
        leaves.append(out.detach().requires_grad_())
        return leaves[-1]

    def constant_norm(e):
        return e / e.norm(dim=-1, keepdim=True).detach()

    if job["side"] == "image":
        leaves.append(images.clone().requires_grad_())
        explained, others = model.encode_image(leaves[0]), model.encode_text(ids).detach()
    else:
        handle = model.token_embedding.register_forward_hook(leaf)
        explained, others = model.encode_text(ids), model.encode_image(images).detach()
        handle.remove()
    logits = model.logit_scale.exp() * constant_norm(explained) @ torch.nn.functional.normalize(others, dim=-1).t()
    logits.gather(1, job["target"][:, None]).sum().backward()
    x = leaves[0]
    return (x * x.grad).sum(1 if job["side"] == "image" else -1).detach()


if __name__ == "__main__":
    torch.set_num_threads(1)
    tasks = torch.load(sys.argv[1], weights_only=True)
    torch.save([{"vit": vit_relevance, "hf_vit": hf_vit_relevance, "bert": bert_relevance,
              "clip": clip_relevance}[task["kind"]](task) for task in tasks], sys.argv[2])
