"""What the three ViT benchmark scripts share: flags, model loading, transforms, output, one-line errors."""
import json
import os
import re
import sys

import torch
from torchvision import transforms

from baselines.cli import UserError, device_name, first_line
from baselines.eval import distributed
from baselines.eval.results import InputError


MODEL_HELP = ("timm ViT name or shipped model (our explainable copy; default: the repository's synthetic_vit), or "
              "timm:NAME / hf:FOLDER for any supported timm model or Hugging Face image classifier, explained through "
              "hooks (no LRP methods); a CLIP name (synthetic_clip, ViT-B-32, ...) runs as a zero-shot classifier")


def add_common_arguments(parser, batch_size, model_help=MODEL_HELP):
    """--model, --weights / --pretrained / --random-weights, --batch-size, --num-workers, --device, --limit."""
    parser.add_argument("--model", default=None, help=model_help)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", default=None, help="local checkpoint for --model")
    source.add_argument("--pretrained", action="store_true",
                        help="download --model's weights through timm: the papers' for vit_base_patch16_224 "
                             "(vit_base_patch16_224.orig_in21k_ft_in1k) and deit_base_patch16_224 (.fb_in1k); "
                             "an explicit NAME.TAG as given")
    source.add_argument("--random-weights", action="store_true",
                        help="run a timm --model with random weights (refused otherwise: such tables mean nothing)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per batch (default {batch_size})")
    workers = min(4, os.cpu_count() or 1)
    parser.add_argument("--num-workers", type=int, default=workers,
                        help=f"data loading processes (default min(4, CPUs) = {workers})")
    parser.add_argument("--device", type=device_name, default=None,
                        help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")


def launch(work, args):
    """Check the shared options, then ``work(args, dist)`` inside this process's (torchrun-aware) setup."""
    check_common(args)
    dist = distributed.setup(args.device)
    try:
        return work(args, dist)
    finally:
        dist.close()


def check_common(args):
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if args.num_workers < 0:
        raise InputError("--num-workers must be at least 0")


def load_model(name, weights, device, pretrained=False, random_weights=False):
    """create_model on `device`; a timm name without weights is refused unless `random_weights`, a text model
    always; errors become InputError; a CLIP becomes its zero-shot classifier over its card's classes ("a photo of
    a {class}")."""
    from baselines.models import create_model

    try:
        model = create_model(name, weights, pretrained=pretrained, require_weights=not random_weights).to(device)
        if hasattr(model, "zero_shot"):
            source, model = model.weights_source, model.zero_shot()
            model.weights_source = source
        if not hasattr(model, "img_size"):
            raise InputError(f"{name} is not an image classifier")
        return model
    except (ValueError, OSError, RuntimeError) as error:
        raise InputError(f"cannot load model {name or 'synthetic_vit'}: {first_line(error)}") from None


def image_transform(size):
    """TE's eval transform up to ToTensor: Resize((size, size)) -> uint8 tensor; `to_unit` finishes ToTensor on
    the device (uint8 moves 4x fewer bytes from the loader processes, and the values are ToTensor's exactly)."""
    return transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])


def imagenet_validation(folder, size):
    """torchvision's ``ImageNet(folder, split="val")`` with ``image_transform(size)``; each image is read as 8-bit
    RGB (``to_rgb``: 16-bit grayscale scaled, not clipped), and an unreadable image is an ``InputError`` naming the
    file (also from a loader worker). A folder that is not an ImageNet validation set is one line too."""
    from torchvision.datasets import ImageNet
    try:
        return ImageNet(folder, split="val", transform=image_transform(size), loader=read_image_file)
    except (RuntimeError, OSError, ValueError) as error:
        raise InputError(f"{folder} is not an ImageNet-style validation set (needs meta.bin and val/<wnid>/*.JPEG):"
                         f" {first_line(error)}") from None


def read_image_file(path):
    from PIL import Image, UnidentifiedImageError

    from baselines.data.images import to_rgb
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise InputError(f"cannot read image {path}: {error.__class__.__name__}") from None


def to_unit(images, device):
    """uint8 images -> float32 in [0, 1] on `device`: x / 255, as ToTensor."""
    return images.to(device, non_blocking=True).float().div_(255)


def normalise(images, model):
    """(images - mean) / std with the model's own statistics, on the images' device."""
    mean = torch.tensor(model.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(model.std, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def loader(dataset, batch_size, num_workers, device):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       pin_memory=device.type == "cuda")


def experiment_dir(base):
    """TE's Saver: the first free `base/experiment_k`."""
    taken = [int(m.group(1)) for name in (os.listdir(base) if os.path.isdir(base) else [])
             if (m := re.fullmatch(r"experiment_(\d+)", name))]
    return os.path.join(base, f"experiment_{max(taken, default=-1) + 1}")


def write_json(path, data):
    """Write JSON through a temporary file, so `path` is never partly written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(path + ".tmp", path)


def run(main, argv=None):
    """Run `main(argv)`; bad input ends with one line on stderr (from rank 0 only under torchrun) and exit status 2,
    never a traceback."""
    try:
        return main(argv)
    except UserError as error:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
