"""One registry of methods for every model, the ``explain`` call and the shared ``--method`` flags."""
import argparse
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from baselines.cli import UserError

from . import attention, attnlrp, beyond_intuition, lrp
from .common import check_precision, full_precision, input_maps, valid_tokens
from .interface import PROTOCOLS


@dataclass(frozen=True)
class Method:
    function: Callable
    summary: str
    class_specific: bool = True
    pixel_level: bool = False
    needs: str = "attention"
    """What the method reads from a model: a key of ``interface.PROTOCOLS``."""

    @property
    def options(self):
        """The method's options and their defaults (the originals' eval-script defaults)."""
        params = inspect.signature(self.function).parameters
        return {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty
                and name != "class_index"}


METHODS = {
    "transformer_attribution": Method(lrp.transformer_attribution,
                                      "LRP relevance x gradient of each attention map, rollout (Chefer CVPR'21)", needs="relevance"),
    "rollout": Method(attention.rollout, "head-fused attention + I, row-normalised, multiplied over blocks",
                      class_specific=False),
    "attn_last_layer": Method(attention.attn_last_layer, "last block's raw attention, CLS row, head mean",
                              class_specific=False),
    "attn_gradcam": Method(attention.attn_gradcam, "Grad-CAM on the last attention map"),
    "lrp_last_layer": Method(lrp.lrp_last_layer, "partial LRP: last block's attention relevance (Voita et al.)", needs="relevance"),
    "full_lrp": Method(lrp.full_lrp, "LRP all the way to the input pixels", pixel_level=True, needs="relevance"),
    "generic_attribution": Method(attention.generic_attribution,
                                  "R += mean_h clamp(grad x A, 0) R over blocks (Chefer ICCV'21, no LRP)"),
    "grad_rollout": Method(attention.grad_rollout, "gradient rollout of vit-explain (bugs fixed)"),
    "beyond_intuition_h": Method(beyond_intuition.beyond_intuition_h,
                                 "head-wise attribution x integrated gradients (Chen et al., Ours-H)"),
    "beyond_intuition_t": Method(beyond_intuition.beyond_intuition_t,
                                 "token-wise attribution x integrated gradients (Chen et al., Ours-T)", needs="values"),
    "attnlrp": Method(attnlrp.attnlrp, "AttnLRP to the input: gradient x input with LRP-modified backward (LXT)",
                      pixel_level=True, needs="relevance"),
    "cp_lrp": Method(attnlrp.cp_lrp, "CP-LRP to the input: as attnlrp, no relevance through queries and keys",
                     pixel_level=True, needs="relevance"),
}

ALIASES = {"lrp": "full_lrp", "partial_lrp": "lrp_last_layer", "last_attn": "attn_last_layer",
           "ours": "beyond_intuition_h", "ours_c": "beyond_intuition_t"}
"""The originals' names. TE's own ``lrp`` flag silently ran transformer_attribution; here it is full LRP."""

METHOD_NAMES = list(METHODS)


def resolve_many(names):
    """Canonical names of a list of methods; ``["all"]`` means every method."""
    return list(METHOD_NAMES) if list(names) == ["all"] else [resolve(name) for name in names]


def resolve(name):
    """The canonical name of a method or of one of its original aliases."""
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        raise UserError(f"unknown method '{name}' (choose from {', '.join(METHOD_NAMES)})")
    return canonical


def explain(model, inputs, method, class_index=None, **options):
    """Raw explanation maps of a batch, unnormalised and not upsampled.

    ``inputs``: what the model takes (normalised images ``[B, 3, H, W]`` for a ViT). ``class_index``: None
    (the predicted top class), an int or ``[B]``. Returns ``[B, grid_h, grid_w]`` for a ViT (``[B, H, W]`` for
    the pixel-level ``full_lrp``, ``attnlrp``, ``cp_lrp``), computed in one batched pass; sample ``b`` depends on
    ``inputs[b]`` only.
    """
    spec = METHODS[resolve(method)]
    check_model(model, resolve(method))
    options = {**fitted_defaults(model, spec), **getattr(model, "method_defaults", {}).get(resolve(method), {}),
               **options}
    validate_options(model, options)
    cls_entry = options.pop("cls_entry", "keep")
    check_precision(model, resolve(method), spec.needs)
    check_class_index(model, class_index)
    with full_precision():
        result = spec.function(model, inputs, class_index=class_index, **options)
    if result.dim() != 2:
        return result
    return model.token_map(set_cls_entry(result, cls_entry, valid_tokens(model, inputs)))


def check_class_index(model, class_index):
    """A class index outside the model's classes is refused by every method, class-agnostic ones included."""
    classes = getattr(model, "num_classes", None)
    if class_index is None or classes is None:
        return
    index = torch.as_tensor(class_index).reshape(-1)
    if ((index < 0) | (index >= classes)).any():
        raise UserError(f"class index {index.tolist()} out of range for a model with {classes} classes")


def check_model(model, method):
    """A one-line error when ``model`` lacks what ``method`` reads (see ``interface``)."""
    needs = METHODS[method].needs
    if not isinstance(model, PROTOCOLS[needs]):
        able = supported_methods(model)
        what = {"relevance": "LRP relevance propagation (our ViT/DeiT, BERT and CLIP copies)",
                "values": "value and output projections", "attention": "recorded attention maps"}[needs]
        name = getattr(model, "description", type(model).__name__)
        raise UserError(f"method '{method}' needs {what}, which {name} does not provide"
                         + (f"; methods that work on it: {', '.join(able)}" if able else ""))


def supported_methods(model):
    """The methods whose protocol ``model`` satisfies (see ``interface``)."""
    return [name for name, spec in METHODS.items() if isinstance(model, PROTOCOLS[spec.needs])]


def fitted_defaults(model, spec):
    """On a model of fewer than 12 blocks every method's default start layer becomes ``start * depth // 12``: the
    originals' defaults are block indices of 12-block models, so each method keeps the same share of blocks
    (on 4 blocks: 1 -> 0, 3 -> 1, 6 -> 2). Deeper models keep the originals' indices."""
    start, depth = spec.options.get("start_layer"), len(model.attention_cores)
    return {"start_layer": start * depth // 12} if start is not None and depth < 12 else {}


def set_cls_entry(row, how, valid=None):
    """The CLS row's own entry: ``keep`` it, ``zero`` it, or set it to the row's ``min`` (TE's BERT conventions;
    a ViT map drops the CLS column anyway). ``valid`` (``[B, N]`` bool): the min ignores padding."""
    if how == "keep":
        return row
    row = row.clone()
    if how == "zero":
        row[:, 0] = 0
    else:
        row[:, 0] = (row if valid is None else row.masked_fill(~valid, float("inf"))).amin(dim=1)
    return row


class Explainer:
    """Captum-style call: ``Explainer(model, "rollout", discard_ratio=0.9).attribute(images, target=3)``.

    With ``input_shaped``, ``attribute`` returns maps shaped like the inputs as Captum's attributions are
    (``common.input_maps``: ``[B, 1, H, W]`` for images, ``[B, L]`` for texts) instead of ``explain``'s raw maps."""

    def __init__(self, model, method, input_shaped=False, **options):
        self.model, self.method, self.options = model, resolve(method), options
        self.input_shaped = input_shaped

    def attribute(self, inputs, target=None):
        raw = explain(self.model, inputs, self.method, class_index=target, **self.options)
        return input_maps(raw, inputs, METHODS[self.method].pixel_level) if self.input_shaped else raw


def method_help():
    lines = [f"  {name:<24} {spec.summary}" for name, spec in METHODS.items()]
    lines.append("  aliases: " + ", ".join(f"{a} = {c}" for a, c in ALIASES.items()))
    return "methods:\n" + "\n".join(lines)


def add_method_arguments(parser, default="transformer_attribution", multiple=False, extra_choices=None):
    """``--method`` and every method option; an option left unset takes the method's own default.
    With ``multiple``, ``--method`` takes several names or ``all`` (see ``resolve_many``); ``extra_choices``
    (``{name: help}``) adds a script's own choices, such as a baseline."""
    group = parser.add_argument_group("method", "which explanation and its settings (see 'methods' below)")
    if multiple:
        group.add_argument("--method", nargs="+", default=[default], metavar="M",
                           help=f"one or more methods, or 'all' (default {default})")
    else:
        extra = extra_choices or {}
        group.add_argument("--method", default=default, choices=METHOD_NAMES + list(ALIASES) + list(extra),
                           metavar="M", help=f"explanation method (default {default})"
                           + "".join(f"; '{name}': {text}" for name, text in extra.items()))
    group.add_argument("--class-index", type=int, default=None,
                       help="explain this class (default: the predicted top class)")
    group.add_argument("--start-layer", type=int, default=None,
                       help="0-based index of the first block included (default: the method's, e.g. 1 for "
                            "transformer_attribution and rollout, 3 / 6 for beyond_intuition_h / _t)")
    group.add_argument("--head-fusion", choices=["mean", "min", "max"], default=None,
                       help="rollout: how heads are fused (default mean)")
    group.add_argument("--discard-ratio", type=float, default=None,
                       help="rollout / grad_rollout: fraction of lowest attention entries zeroed "
                            "(default 0 for rollout, 0.9 for grad_rollout)")
    group.add_argument("--steps", type=int, default=None,
                       help="beyond_intuition_*: integrated-gradient steps (default 20)")
    group.add_argument("--is-ablation", action="store_true",
                       help="lrp_last_layer: multiply the relevance by the attention gradient")
    group.add_argument("--gamma", type=float, default=None,
                       help="attnlrp / cp_lrp: LRP-gamma on the linear layers outside attention (default 0: off)")
    group.add_argument("--conv-gamma", type=float, default=None,
                       help="attnlrp / cp_lrp: LRP-gamma on the patch embedding (default 0: off)")
    group.add_argument("--cls-entry", choices=["keep", "zero", "min"], default=None,
                       help="text models: the [CLS] token's own score (default: the original's per method)")
    if parser.epilog is None:
        parser.epilog = method_help()
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


def method_options(args, warn=True):
    """The options of ``args`` that the chosen method takes (unset ones omitted); with ``warn``, a warning names
    each given option that the method does not take (it is ignored, never silently)."""
    accepted = METHODS[resolve(args.method)].options
    values = {"start_layer": args.start_layer, "head_fusion": args.head_fusion,
              "discard_ratio": args.discard_ratio, "steps": args.steps,
              "is_ablation": args.is_ablation or None, "gamma": getattr(args, "gamma", None),
              "conv_gamma": getattr(args, "conv_gamma", None)}
    chosen = {k: v for k, v in values.items() if v is not None and k in accepted}
    ignored = ["--" + k.replace("_", "-") for k, v in values.items() if v is not None and k not in accepted]
    if warn and ignored:
        warnings.warn(f"method '{resolve(args.method)}' does not take {', '.join(ignored)}: ignored", stacklevel=2)
    if getattr(args, "cls_entry", None):
        chosen["cls_entry"] = args.cls_entry
    return chosen


def validate_options(model, options):
    """One-line errors for option values that do not fit the model."""
    depth = len(model.attention_cores)
    start = options.get("start_layer")
    if start is not None and not 0 <= start < depth:
        raise UserError(f"--start-layer {start} out of range for a model with {depth} blocks")
    if options.get("steps") is not None and options["steps"] < 1:
        raise UserError("--steps must be at least 1")
    if min(options.get("gamma") or 0, options.get("conv_gamma") or 0) < 0:
        raise UserError("--gamma and --conv-gamma must be >= 0")
    ratio = options.get("discard_ratio")
    if ratio is not None and not 0 <= ratio < 1:
        raise UserError("--discard-ratio must be in [0, 1)")
