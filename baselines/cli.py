"""What every command-line script shares: the device flag, model flags and one-line errors."""
import shutil
import sys

import torch


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_model_arguments(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="timm ViT name (vit_base_patch16_224, deit_small_patch16_224, ...) or a model card "
                            "JSON (our explainable copy); timm:NAME or hf:FOLDER for any supported timm model or "
                            "Hugging Face folder, explained through hooks (no LRP methods); default: the shipped "
                            "tiny ViT trained on the synthetic benchmark")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--weights", default=None,
                        help="local checkpoint: timm state dict, original JAX/DeiT .pth, {'model': ...} wrapper "
                             "or .safetensors")
    source.add_argument("--pretrained", action="store_true",
                        help="download --model's weights through timm: the papers' for vit_base_patch16_224 "
                             "(vit_base_patch16_224.orig_in21k_ft_in1k) and deit_base_patch16_224 (.fb_in1k); "
                             "an explicit NAME.TAG as given")
    group.add_argument("--device", default=default_device(), help="torch device (default: cuda when present)")


def load_model(args):
    from baselines.models import create_model
    return create_model(args.model, weights=args.weights, pretrained=args.pretrained, device=args.device)


def prepare_output_folder(output, overwrite, owned):
    """Create the folder ``output``; refuse a non-empty one unless ``overwrite``, which removes only the entries
    named in ``owned`` (what the calling script writes there)."""
    if output.exists() and not output.is_dir():
        raise UserError(f"{output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise UserError(f"{output} is not empty; pass --overwrite to write into it")
        for name in owned:
            target = output / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    output.mkdir(parents=True, exist_ok=True)


def run(main):
    """Call ``main()``; user errors become ``error: <one line>`` on stderr and exit status 2."""
    from baselines.models import ModelError
    try:
        main()
    except (UserError, ModelError, ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
