"""Explain a ViT's prediction on image files: heatmaps as PNG overlays and raw maps as .npy.

Example (the shipped tiny ViT and every method, one panel per image):
    python baselines/ViT/explain.py samples/*.png --method all --output outputs/
Any supported timm model or Hugging Face folder, through hooks: --model timm:NAME [--weights FILE | --pretrained]
or --model hf:FOLDER.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.cli import UserError, add_model_arguments, load_model, positive_int, run  # noqa: E402
from baselines.data.images import read_images  # noqa: E402
from baselines.methods import (METHODS, add_method_arguments, explain, method_options, pixel_maps,  # noqa: E402
                               resolve_many, supported_methods)
from baselines.visualize import save_overlay, save_panel  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    add_model_arguments(parser)
    add_method_arguments(parser, multiple=True)
    parser.add_argument("--mean", nargs=3, type=float, default=None, help="normalisation mean (default: model's)")
    parser.add_argument("--std", nargs=3, type=float, default=None, help="normalisation std (default: model's)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    parser.add_argument("--save-raw", metavar="OUT.npy", default=None,
                        help="write float32 [num_images, grid_h, grid_w] raw maps (one method only)")
    parser.add_argument("--output", metavar="DIR", default=None, help="write PNG heatmap overlays here")
    args = parser.parse_args(argv)
    args.methods = resolve_many(args.method)
    if args.save_raw and len(args.methods) > 1:
        raise UserError("--save-raw takes exactly one method")
    return args


def load_images(paths, size):
    """Images resized to ``size`` x ``size``, as [0, 1] tensors ``[N, 3, size, size]``."""
    return read_images(paths, transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()]))


def class_name(model, index):
    names = model.class_names
    return names[index] if index < len(names) else f"class {index}"


def main(argv=None):
    args = parse_args(argv)
    model = load_model(args)
    if not hasattr(model, "img_size"):
        raise UserError(f"--model {args.model} is not an image classifier (texts: baselines/BERT/explain.py)")
    if args.method == ["all"]:
        args.methods = [m for m in args.methods if m in supported_methods(model)]
    images = load_images(args.images, model.img_size)
    normalise = transforms.Normalize(args.mean or model.mean, args.std or model.std)
    with torch.no_grad():
        probs = torch.cat([model(normalise(b).to(args.device)).softmax(-1).cpu() for b in images.split(64)])
    maps = {}
    for method in tqdm(args.methods, desc="methods", disable=len(args.methods) == 1):
        options = method_options(argparse.Namespace(**{**vars(args), "method": method}),
                                 warn=len(args.methods) == 1)
        raw = [explain(model, normalise(batch).to(args.device), method, class_index=args.class_index, **options)
               .detach().cpu() for batch in images.split(args.batch_size)]
        maps[method] = torch.cat(raw)
    if args.save_raw:
        np.save(args.save_raw, maps[args.methods[0]].float().numpy())
    if args.output:
        write_pngs(args, model, images, probs, maps)
    for path, p in zip(args.images, probs):
        top = int(p.argmax())
        print(f"{path}: {class_name(model, top)} ({p[top]:.3f})")


def output_stems(paths):
    """The PNG name stem of each input: its file stem, or, when several inputs share a stem (``a/x.png``,
    ``b/x.jpg``), the stem with its position in the list appended (``x-1``, ``x-2``), so none overwrites another."""
    stems = [Path(path).stem for path in paths]
    return [f"{stem}-{i + 1}" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]


def write_pngs(args, model, images, probs, maps):
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    heat = {m: pixel_maps(r, model.patch_size, METHODS[m].pixel_level)[:, 0].numpy() for m, r in maps.items()}
    names = output_stems(args.images)
    for i, path in enumerate(args.images):
        image = images[i].permute(1, 2, 0).numpy()
        top = int(probs[i].argmax())
        shown = args.class_index if args.class_index is not None else top
        if len(maps) == 1:
            (method,) = heat
            save_overlay(out / f"{names[i]}_{method}.png", image, heat[method][i])
        else:
            title = (f"{Path(path).name}: predicted {class_name(model, top)} ({probs[i, top]:.2f}); "
                     f"explained: {class_name(model, shown)}")
            save_panel(out / f"{names[i]}.png", image, [(m, h[i]) for m, h in heat.items()], title)


if __name__ == "__main__":
    run(main)
