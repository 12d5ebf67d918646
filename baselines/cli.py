"""What every command-line script shares: the device flag, model flags and one-line errors."""
import argparse
import shutil
import sys

import torch


class UserError(ValueError):
    """A problem with the user's input (a flag, a file, a model, data): ``run`` prints it as one line and exits with
    status 2. The one type scripts catch: every other exception is a programming error and keeps its traceback.
    Subclasses name where it arose (``ModelError``, ``InputError``, ``DataError``, ...); it is a ``ValueError`` so
    that library callers catching ``ValueError`` keep working."""


def first_line(error):
    """An exception's message as one line (its type name when the message is empty). An error re-raised from a
    data-loader worker ("Caught X in DataLoader worker process N" + the worker's traceback) gives the worker's own
    message, the traceback's last line without its type."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    lines = text.splitlines()
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0] and len(lines) > 1:
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(text):
    """argparse type of ``--device``: ``text`` when it names a device this machine has, else a one-line error."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"'{text}': CUDA is not available on this machine (try --device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"'{text}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"'{text}': MPS is not available on this machine (try --device cpu)")
    return text


def positive_int(text):
    """argparse type of counts and sizes (``--batch-size``, ``--limit``, ``--num-labels``): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_device_argument(parser, default=None):
    """``--device``, checked against this machine (default: cuda when present, else cpu)."""
    parser.add_argument("--device", type=device_name, default=default or default_device(),
                        help="torch device (default: cuda when present, else cpu)")


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
    add_device_argument(group)


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
    """Call ``main()``; a ``UserError`` becomes ``error: <one line>`` on stderr and exit status 2."""
    try:
        main()
    except UserError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        sys.exit(2)
