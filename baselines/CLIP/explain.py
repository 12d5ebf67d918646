"""Explain CLIP's image-text similarity: for every (image, text) pair a heatmap over the image and the text's token
relevance, one PNG per image with every text (and every method with --method all).

The image map explains logits_per_image[image, text] through the image tower, the text scores explain the same
similarity through the text tower (the generic-attention paper's CLIP notebook does both from one backward).
Example (the shipped tiny CLIP trained on the synthetic shapes):
    python baselines/CLIP/explain.py samples/clip/*.png --text "a photo of a star" "a photo of a heart" \\
        --method generic_attribution --output outputs/clip
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.cli import UserError, add_device_argument, run  # noqa: E402
from baselines.data.images import read_images  # noqa: E402
from baselines.methods import METHODS, add_method_arguments, method_options, pixel_maps, resolve_many  # noqa: E402
from baselines.models.clip import create_clip, explain_pairs  # noqa: E402
from baselines.visualize import save_clip_panel  # noqa: E402

DEFAULT_MODEL = "synthetic_clip"


def add_clip_model_arguments(parser):
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--model", default=None,
                        help="a shipped CLIP card (default synthetic_clip, the tiny CLIP trained on the synthetic "
                             "shapes) or an open_clip architecture (ViT-B-32, ViT-B-16-quickgelu, ...: with "
                             "--weights, its heads and activation)")
    source.add_argument("--hf-dir", default=None, metavar="DIR",
                        help="a Hugging Face CLIPModel folder (config.json, model.safetensors or pytorch_model.bin)")
    group.add_argument("--weights", default=None, metavar="FILE",
                       help="a CLIP checkpoint: OpenAI's ViT-B-32.pt (TorchScript archive, read without running "
                            "it) or state dict, an open_clip state dict, a .safetensors")
    add_device_argument(group)


def load_clip(args):
    name = args.model if args.model or args.weights or args.hf_dir else DEFAULT_MODEL
    return create_clip(name, weights=args.weights, hf_dir=args.hf_dir, device=args.device)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    parser.add_argument("--text", nargs="+", required=True, metavar="TEXT", help="one or more texts")
    add_clip_model_arguments(parser)
    add_method_arguments(parser, default="generic_attribution", multiple=True)
    parser.add_argument("--batch-size", type=int, default=8, help="(image, text) pairs per batch (default 8)")
    parser.add_argument("--save-raw", metavar="OUT.npz", default=None,
                        help="write float32 'image' [num_images, num_texts, grid_h, grid_w] and 'text' "
                             "[num_images, num_texts, context_length] raw maps (one method only)")
    parser.add_argument("--output", metavar="DIR", default=None, help="write one PNG per image here")
    args = parser.parse_args(argv)
    args.methods = resolve_many(args.method)
    if args.save_raw and len(args.methods) > 1:
        raise UserError("--save-raw takes exactly one method")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    return args


def load_images(paths, size):
    """CLIP's preprocessing before normalisation: bicubic resize of the short side, centre crop, [0, 1] tensors."""
    return read_images(paths, transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(size),
        transforms.ToTensor()]))


def main(argv=None):
    args = parse_args(argv)
    model = load_clip(args)
    tokens = model.tokenizer(args.text)
    for text, cut in zip(args.text, tokens.truncated):
        if cut:
            print(f"note: '{text[:40]}...' is longer than the {model.config.context_length}-token context; "
                  "truncated", file=sys.stderr)
    images = load_images(args.images, model.img_size)
    normalised = transforms.Normalize(model.mean, model.std)(images).to(args.device)
    ids = tokens.ids.to(args.device)
    with torch.no_grad():
        logits = model(normalised, ids).cpu()
    maps = {}
    pairs = len(args.images) * len(args.text)
    for method in args.methods:
        options = method_options(argparse.Namespace(**{**vars(args), "method": method}))
        with tqdm(total=2 * pairs, desc=method, unit="pair", disable=pairs * len(args.methods) < 8) as bar:
            maps[method] = {side: explain_pairs(model, normalised, ids, method, side=side, batch_size=args.batch_size,
                                                progress=bar, **options).cpu()
                            for side in ("image", "text")}
    if args.save_raw:
        raw = maps[args.methods[0]]
        np.savez(args.save_raw, image=raw["image"].float().numpy(), text=raw["text"].float().numpy())
    if args.output:
        write_pngs(args, model, images, tokens, logits, maps)
    for i, path in enumerate(args.images):
        probs = logits[i].softmax(dim=-1)
        print(f"{path}: " + "; ".join(f"'{t}' {logits[i, j]:.2f} (p {probs[j]:.3f})" for j, t in enumerate(args.text)))


def write_pngs(args, model, images, tokens, logits, maps):
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    heat = {}
    for method, result in maps.items():
        flat = result["image"].flatten(0, 1)
        heat[method] = pixel_maps(flat, model.patch_size, METHODS[method].pixel_level)[:, 0] \
            .view(*result["image"].shape[:2], *images.shape[-2:]).numpy()
    for i, path in enumerate(args.images):
        rows = []
        for t, text in enumerate(args.text):
            n = len(tokens.tokens[t])
            cells = [(method, heat[method][i, t], maps[method]["text"][i, t, :n].float().numpy()) for method in maps]
            rows.append((f"'{text}' ({logits[i, t]:.2f})", tokens.tokens[t], cells))
        save_clip_panel(out / f"{Path(path).stem}.png", images[i].permute(1, 2, 0).numpy(), rows)


if __name__ == "__main__":
    run(main)
