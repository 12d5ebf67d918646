"""Models we did not re-implement, explained through hooks: a loaded timm or Hugging Face model in the model
interface (``baselines.methods.interface``), without a copy of its code.

``hook_model(model)`` returns a ``HookedModel`` (an ``AttentionModel``; a ``HookedValueModel``, also a
``ValueModel``, where each block's value and output projections are modules). Inside ``record(first_block)``:

* the attention of blocks ``>= first_block`` runs its unfused path, which materialises the probabilities
  (timm: ``fused_attn = False`` on those attention modules; Hugging Face: the ``eager`` attention implementation),
  and forward hooks keep them: timm's ``attn_drop`` output, the tensor its block multiplies with the values; the
  second output of a Hugging Face attention module, the tensor its eager function multiplies with the values;
* the residual stream entering block ``first_block`` is made to require grad (when gradients are enabled), so the
  logits can be differentiated with respect to every recorded map (as our own attention cores do);
* a block's input and value projection are kept where the family provides them (Beyond Intuition's token-wise term).

On exit the flags are restored and every hook removed: outside an explanation the model runs its own forward,
fused kernel included. LRP methods need our own layer-built copies (``RelevanceModel``) and are refused.

The explained row (``query_rows``) is what the head reads, weighted as it pools: the class token (row 0) of a
class-token ViT, BERT, RoBERTa, DistilBERT, ELECTRA; rows 0 and 1 at 1/2 each for a distilled DeiT (its logits average
the class-token and distillation-token heads); ``1/n`` on each of the ``n`` pooled tokens of an average-pooled model
(BEiT, EVA or a ViT without class token; register tokens are not pooled); the last non-padding position of a decoder
language model, whose "classes" are the vocabulary (the target is the next-token logit).
"""
import inspect
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

from .bert import text_classifier_defaults
from .vit import HALF, ModelError, read_checkpoint

TIMM_FAMILIES = "timm VisionTransformer (ViT, DeiT, distilled DeiT, register tokens, DINOv2), Beit, Eva"
HF_TEXT = ("bert", "roberta", "electra", "distilbert")
HF_IMAGE = ("vit", "deit", "beit")
HF_LM = ("gpt2", "llama")
HF_FAMILIES = ("Hugging Face ViT, DeiT, BEiT image classifiers; BERT, RoBERTa, DistilBERT, ELECTRA sequence "
               "classifiers; GPT-2 and Llama causal language models")


@dataclass
class Family:
    """How to read one loaded model: where its blocks and attention are, and what its head reads."""
    description: str
    blocks: list
    probabilities: list
    """Per block, ``(module, pick)``: a forward hook on ``module`` keeps ``pick(output)``, the probabilities."""
    unfused: Callable
    """``unfused(first_block)``: a context manager in which the attention of the recorded blocks is unfused."""
    forward: Callable
    """``forward(inputs)`` -> logits ``[B, C]``."""
    num_classes: int
    kind: str
    """``image``, ``text`` (classifier) or ``lm`` (decoder language model)."""
    prefix_tokens: int = 0
    grid: tuple = ()
    pooled: Optional[dict] = None
    """Images: ``{row: weight}`` of the rows the head reads, or None for the mean of the patch tokens."""
    values: Optional[list] = None
    """Per block, ``(module, pick, output_weight)``: the value projection ``pick(output)`` ``[B, N, D]`` of a hook
    on ``module``, and the output projection's weight ``[D_out, D]``; None when the family does not provide them."""
    defaults: dict = field(default_factory=dict)
    image: dict = field(default_factory=dict)
    """Images: ``img_size``, ``patch_size``, ``mean``, ``std``."""


class Core:
    """One block's recording; ``attn`` is its attention probabilities ``[B, H, N, N]``."""

    def __init__(self, index):
        self.index, self.saved = index, {}

    @property
    def attn(self):
        if "attn" not in self.saved:
            raise ModelError(f"the attention of block {self.index} was not recorded: this model computes it in a way "
                             "the hooks do not see")
        return self.saved["attn"]


class HookedModel(nn.Module):
    """A timm or Hugging Face model in the ``AttentionModel`` interface (see the module docstring)."""

    def __init__(self, model, family: Family):
        super().__init__()
        self.model, self.family = model, family
        self.blocks = family.blocks
        self.cores = [Core(i) for i in range(len(family.blocks))]
        self.description = family.description
        self.method_defaults = family.defaults
        self.image_tokens = slice(family.prefix_tokens, None)
        for key, value in family.image.items():
            setattr(self, key, value)
        self.eval()

    @property
    def attention_cores(self):
        return self.cores

    @property
    def config(self):
        """The wrapped model's config (Hugging Face) or None."""
        return getattr(self.model, "config", None)

    @property
    def num_classes(self):
        return self.family.num_classes

    @property
    def class_names(self):
        labels = getattr(getattr(self.model, "config", None), "id2label", None) or {}
        return tuple(labels.get(i, f"class {i}") for i in range(len(labels))) if self.family.kind != "lm" else ()

    def forward(self, inputs, input_scale=None):
        """Logits ``[B, C]``; ``input_scale`` ``[B]`` multiplies the images, or a text's embedding output (the input
        of the first block), as our own copies do."""
        if input_scale is None:
            return self.family.forward(inputs)
        if self.family.kind == "image":
            return self.family.forward(inputs * input_scale.view(-1, 1, 1, 1).to(inputs.dtype))

        def scale(module, args, kwargs):
            return replace_hidden(args, kwargs, lambda x: x * input_scale.view(-1, 1, 1).to(x.dtype))
        handle = self.blocks[0].register_forward_pre_hook(scale, with_kwargs=True)
        try:
            return self.family.forward(inputs)
        finally:
            handle.remove()

    @contextmanager
    def record(self, first_block=0, fused_before=True):
        handles = []
        try:
            for index in range(first_block, len(self.blocks)):
                handles += self._hooks(index, index == first_block)
            with self.family.unfused(first_block if fused_before else 0):
                yield self
        finally:
            for handle in handles:
                handle.remove()
            for core in self.cores:
                core.saved = {}

    def _hooks(self, index, first):
        core = self.cores[index]

        def block_input(module, args, kwargs):
            def keep(x):
                if first and torch.is_grad_enabled() and not x.requires_grad:
                    x = x.detach().requires_grad_()
                core.saved["input"] = x
                return x
            return replace_hidden(args, kwargs, keep)

        attention, probabilities = self.family.probabilities[index]
        handles = [self.blocks[index].register_forward_pre_hook(block_input, with_kwargs=True),
                   attention.register_forward_hook(
                       lambda m, args, out: core.saved.__setitem__("attn", probabilities(out)))]
        if self.family.values is not None:
            value, values = self.family.values[index][:2]
            handles.append(value.register_forward_hook(lambda m, args, out: core.saved.__setitem__("values",
                                                                                                  values(out))))
        return handles

    def query_rows(self, inputs):
        f = self.family
        if f.kind == "image":
            count, tokens = inputs.shape[0], f.prefix_tokens + f.grid[0] * f.grid[1]
            weights = torch.zeros(tokens, dtype=inputs.dtype, device=inputs.device)
            if f.pooled is None:
                weights[f.prefix_tokens:] = 1 / (tokens - f.prefix_tokens)
            elif list(f.pooled) == [0]:
                return torch.zeros(count, dtype=torch.long, device=inputs.device)
            else:
                for row, weight in f.pooled.items():
                    weights[row] = weight
            return weights.expand(count, -1)
        ids = inputs["input_ids"]
        if f.kind == "text":
            return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        return last_positions(inputs)

    def valid_tokens(self, inputs):
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        return None if mask is None else mask.bool()

    def token_map(self, row):
        """Images: the patch tokens' entries on the patch grid ``[B, h, w]``; texts: every token ``[B, L]``."""
        if self.family.kind != "image":
            return row
        return row[:, self.family.prefix_tokens:].reshape(row.shape[0], *self.family.grid)


class HookedValueModel(HookedModel):
    """A hooked model whose blocks also give Beyond Intuition's token-wise terms (``ValueModel``)."""

    def value_terms(self, index):
        saved = self.cores[index].saved
        if "values" not in saved:
            raise ModelError(f"the value projection of block {index} was not recorded")
        return saved["input"], saved["values"] @ self.family.values[index][2].t()


def replace_hidden(args, kwargs, fn):
    """A block's call with its hidden states (first positional argument or ``hidden_states``) replaced by
    ``fn(hidden_states)``."""
    if args:
        return (fn(args[0]), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}


def last_positions(inputs):
    """``[B]``: each text's last non-padding position."""
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    if mask is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    positions = torch.arange(ids.shape[1], device=ids.device)
    return (mask.bool() * (positions + 1)).argmax(dim=1)


def hook_model(model):
    """A loaded timm or Hugging Face model in the model interface, or a ``ModelError`` naming what is supported."""
    module = type(model).__module__
    if module.startswith("timm."):
        family = timm_family(model)
    elif module.startswith("transformers."):
        family = hf_family(model)
    else:
        raise ModelError(f"{type(model).__name__} is neither a timm nor a Hugging Face model; supported: "
                         f"{TIMM_FAMILIES}; {HF_FAMILIES}")
    return (HookedValueModel if family.values is not None else HookedModel)(model, family)


def load_hooked(spec, weights=None, pretrained=False):
    """``timm:NAME`` (random weights, ``weights`` a local checkpoint, or ``pretrained`` through timm) or
    ``hf:FOLDER`` (a Hugging Face model folder; ``weights`` replaces its state dict), wrapped by ``hook_model``."""
    source, _, name = spec.partition(":")
    model = load_timm(name, weights, pretrained) if source == "timm" else load_hf(name, weights, pretrained)
    hooked = hook_model(model)
    hooked.source, hooked.head_trained = spec, getattr(model, "head_trained", True)
    processor = Path(name) / "preprocessor_config.json"
    if source == "hf" and hooked.family.kind == "image" and processor.is_file():
        stats = json.loads(processor.read_text())
        hooked.mean, hooked.std = tuple(stats.get("image_mean", HALF)), tuple(stats.get("image_std", HALF))
    return hooked


def load_text_classifier(spec, num_labels, device="cpu"):
    """``(model, fast tokenizer)`` of ``hf:FOLDER``, checked to be a text classifier of ``num_labels`` classes (the
    BERT benchmark scripts' ``--model``)."""
    from transformers import AutoTokenizer
    if not spec.startswith("hf:"):
        raise ModelError(f"--model takes hf:FOLDER, not {spec}")
    model = load_hooked(spec).to(device)
    if model.family.kind != "text" or model.num_classes != num_labels:
        raise ModelError(f"--model {spec} is not a text classifier of {num_labels} classes")
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.removeprefix("hf:"), use_fast=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load a tokenizer from {spec} ({first_line(error)})") from None
    if not tokenizer.is_fast:
        raise ModelError(f"the tokenizer of {spec} has no fast version (needed for word offsets)")
    return model, tokenizer


def load_timm(name, weights, pretrained):
    import timm
    state = read_checkpoint(weights) if weights else None
    head = state.get("head.weight") if state is not None else None
    extra = {"num_classes": head.shape[0]} if head is not None and head.dim() == 2 else {}
    try:
        model = timm.create_model(name, pretrained=pretrained, **extra)
    except Exception as error:
        raise ModelError(f"cannot create timm model '{name}' ({first_line(error)})"
                         + ("; pass a local checkpoint with --weights" if pretrained else "")) from None
    if state is not None:
        load_state(model, state, weights)
    return model.eval()


def load_hf(folder, weights, pretrained):
    """The folder's model with the head its architecture names (or the Auto class of its family); a bare encoder
    gets a head drawn with seed 0 and ``head_trained`` False."""
    import transformers
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging
    if pretrained:
        raise ModelError("--pretrained is for timm:NAME; hf:FOLDER loads the weights of its folder")
    if not Path(folder).is_dir():
        raise ModelError(f"model folder not found: {folder}")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as error:
        raise ModelError(f"cannot read the config of {folder} ({first_line(error)})") from None
    kind = ("text" if config.model_type in HF_TEXT else "image" if config.model_type in HF_IMAGE
            else "lm" if config.model_type in HF_LM else None)
    if kind is None:
        raise ModelError(f"Hugging Face {config.model_type} ({folder}) is not supported through hooks; supported: "
                         f"{HF_FAMILIES}")
    named = [getattr(transformers, a, None) for a in config.architectures or []]
    heads = {"text": "ForSequenceClassification", "image": "ForImageClassification", "lm": "LMHeadModel"}
    fitting = [c for c in named if c is not None and (heads[kind] in c.__name__ or c.__name__.endswith("ForCausalLM")
                                                    or c.__name__.endswith("WithTeacher"))]
    auto = {"text": "AutoModelForSequenceClassification", "image": "AutoModelForImageClassification",
            "lm": "AutoModelForCausalLM"}[kind]
    cls = fitting[0] if fitting else getattr(transformers, auto)
    verbosity = hf_logging.get_verbosity()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model, info = cls.from_pretrained(folder, output_loading_info=True)
        except Exception as error:
            raise ModelError(f"cannot load {cls.__name__} from {folder} ({first_line(error)})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
    model.head_trained = not info["missing_keys"]
    if weights:
        load_state(model, read_checkpoint(weights), weights)
        model.head_trained = True
    return model.eval()


def load_state(model, state, path):
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"checkpoint {path} does not fit the model ({first_line(error)[:200]})") from None


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


# --- timm -------------------------------------------------------------------------------------------------------

def timm_family(model):
    from timm.layers import Attention
    from timm.models.beit import Beit
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer
    name = type(model).__name__
    if not isinstance(model, (VisionTransformer, Beit, Eva)):
        raise ModelError(f"timm {name} is not supported through hooks (windowed or hierarchical attention, or no "
                         f"attention probabilities); supported: {TIMM_FAMILIES}")
    attentions = [block.attn for block in model.blocks]
    if not all(hasattr(a, "fused_attn") and isinstance(getattr(a, "attn_drop", None), nn.Dropout)
               for a in attentions):
        raise ModelError(f"timm {name}: its attention modules have no unfused path with attention dropout, so their "
                         "probabilities cannot be recorded")
    prefix = model.num_prefix_tokens
    pool = getattr(model, "global_pool", "token")
    if hasattr(model, "head_dist"):
        pooled = {0: 0.5, 1: 0.5}
    elif getattr(model, "attn_pool", None) is None and pool == "token":
        pooled = {0: 1.0}
    elif getattr(model, "attn_pool", None) is None and pool == "avg" and not getattr(model, "pool_include_prefix",
                                                                                  False):
        pooled = None
    else:
        raise ModelError(f"timm {name} pools with '{pool}'{' (attention pooling)' if pool in ('map', 'prr') else ''}"
                         ": only class-token ('token') and average ('avg') pooling can be explained")

    @contextmanager
    def unfused(first_block):
        flags = [a.fused_attn for a in attentions]
        try:
            for a in attentions[first_block:]:
                a.fused_attn = False
            yield
        finally:
            for a, flag in zip(attentions, flags):
                a.fused_attn = flag

    values = None
    plain = [isinstance(a, Attention) and isinstance(a.norm, nn.Identity) and getattr(a, "gate", None) is None
             for a in attentions]
    if all(plain):
        values = [(a.qkv, qkv_values, a.proj.weight) for a in attentions]
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    embed = model.patch_embed
    return Family(
        description=f"timm {name} (through hooks)", blocks=list(model.blocks),
        probabilities=[(a.attn_drop, lambda out: out) for a in attentions], unfused=unfused, forward=model,
        num_classes=model.num_classes, kind="image", prefix_tokens=prefix, grid=tuple(embed.grid_size),
        pooled=pooled, values=values,
        image={"img_size": embed.img_size[0], "patch_size": embed.patch_size[0],
               "mean": tuple(cfg.get("mean", HALF)), "std": tuple(cfg.get("std", HALF))})


def qkv_values(out):
    """The values ``[B, N, D]`` of timm's fused qkv projection output ``[B, N, 3 D]``."""
    return out.chunk(3, dim=-1)[2]


# --- Hugging Face -----------------------------------------------------------------------------------------------

ATTENTION_PATHS = ("attention.self", "self_attn", "attn", "attention")
"""Where a block's attention module (the one that calls the attention function) is, first match wins."""
VALUE_PATHS = {"value": "output.dense", "v_proj": "o_proj", "v_lin": "out_lin"}
"""Value projection -> output projection, relative to the attention module (``output.dense``: its parent's)."""


def hf_family(model):
    config = model.config
    kind = ("text" if config.model_type in HF_TEXT else "image" if config.model_type in HF_IMAGE
            else "lm" if config.model_type in HF_LM else None)
    name = type(model).__name__
    if kind is None:
        raise ModelError(f"Hugging Face {config.model_type} ({name}) is not supported through hooks; supported: "
                         f"{HF_FAMILIES}")
    expected = {"text": "ForSequenceClassification", "image": "ForImageClassification", "lm": "ForCausalLM"}[kind]
    if expected not in name and not (kind == "lm" and name == "GPT2LMHeadModel") \
            and name != "DeiTForImageClassificationWithTeacher":
        raise ModelError(f"{name}: only the {expected} (and GPT2LMHeadModel) heads can be explained")
    base = model.base_model
    blocks = list(find(base, ("layers", "encoder.layer", "transformer.layer", "h")))
    attentions = [find(block, ATTENTION_PATHS) for block in blocks]

    @contextmanager
    def unfused(first_block):
        before = config._attn_implementation
        try:
            model.set_attn_implementation("eager")
            yield
        finally:
            model.set_attn_implementation(before)

    values = [hf_values(block, attention) for block, attention in zip(blocks, attentions)]
    family = Family(description=f"Hugging Face {name} (through hooks)", blocks=blocks,
                    probabilities=[(a, lambda out: out[1]) for a in attentions], unfused=unfused,
                    forward=None, num_classes=config.vocab_size if kind == "lm" else config.num_labels, kind=kind,
                    values=values if all(v is not None for v in values) else None)
    if kind == "image":
        grid = config.image_size // config.patch_size
        family.prefix_tokens = 2 if config.model_type == "deit" else 1
        family.grid = (grid, grid)
        family.pooled = ({0: 0.5, 1: 0.5} if name == "DeiTForImageClassificationWithTeacher"
                         else None if getattr(config, "use_mean_pooling", False) else {0: 1.0})
        family.image = {"img_size": config.image_size, "patch_size": config.patch_size, "mean": HALF, "std": HALF}
        family.forward = lambda images: model(pixel_values=images).logits
    elif kind == "text":
        family.defaults = text_classifier_defaults(len(blocks))
        family.forward = lambda inputs: model(**accepted(model, inputs)).logits
    else:
        family.forward = lambda inputs: model(**accepted(model, inputs)).logits.gather(
            1, last_positions(inputs).view(-1, 1, 1).expand(-1, 1, config.vocab_size)).squeeze(1)
    return family


def accepted(model, inputs):
    """The entries of a text batch that the model's forward takes (DistilBERT has no ``token_type_ids``)."""
    names = inspect.signature(model.forward).parameters
    return {key: value for key, value in inputs.items() if key in names}


def find(module, paths):
    """The first of the dotted ``paths`` that exists under ``module``."""
    for path in paths:
        found = module
        for part in path.split("."):
            found = getattr(found, part, None)
        if isinstance(found, nn.Module):
            return found
    raise ModelError(f"{type(module).__name__} has none of {', '.join(paths)}: not a supported layout")


def hf_values(block, attention):
    """``(value module, pick, output weight)`` of a Hugging Face attention module with separate value and output
    projections of one width (no grouped-query attention), else None."""
    for value_name, output_path in VALUE_PATHS.items():
        value = getattr(attention, value_name, None)
        if value is None:
            continue
        owner = find(block, ("attention",)) if output_path == "output.dense" else attention
        output = find(owner, (output_path,))
        if isinstance(value, nn.Linear) and isinstance(output, nn.Linear) \
                and value.out_features == output.in_features:
            return value, lambda out: out, output.weight
    return None


__all__ = ["HookedModel", "HookedValueModel", "hook_model", "load_hooked", "load_text_classifier", "HF_FAMILIES", "TIMM_FAMILIES"]
