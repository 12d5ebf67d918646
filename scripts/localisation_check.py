"""How well explanations of the shipped synthetic ViT find the class object, against trivial maps.

For N validation images of the synthetic benchmark (regenerated from the model card's data seed), each map is
upsampled, min-max normalised and binarised at its mean (the segmentation test's rule); the score is the
intersection-over-union with the object's mask. A uniform map (everything foreground) and a centre-bias map
(a centred Gaussian, binarised the same way) are the baselines.

    python scripts/localisation_check.py --num-images 100 --methods transformer_attribution rollout
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms  # noqa: E402

from baselines.cli import add_device_argument, run  # noqa: E402
from baselines.data.synthetic import as_stored, generate  # noqa: E402
from baselines.methods import METHODS, explain, pixel_maps, resolve_many  # noqa: E402
from baselines.models import DEFAULT_MODEL, PRETRAINED_DIR, create_model  # noqa: E402


def validation_set(card, count):
    """``(normalised images [N,3,H,W], masks [N,H,W] bool, labels [N])`` regenerated from the card's data seed."""
    prepare = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                  transforms.Normalize(card["mean"], card["std"])])
    samples = [generate(card["data_seed"], "val", i) for i in range(count)]
    images = torch.stack([prepare(as_stored(s.image)) for s in samples])
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).bool()
    return images, masks, torch.tensor([s.label for s in samples])


def iou(binary, masks):
    inter = (binary & masks).flatten(1).sum(1).float()
    union = (binary | masks).flatten(1).sum(1).float()
    return inter / union


def binarise(maps):
    """``[N,1,H,W]`` maps in [0,1] -> foreground where above the map's own mean."""
    return (maps > maps.mean(dim=(1, 2, 3), keepdim=True))[:, 0]


def centre_bias(count, size):
    axis = torch.linspace(-1, 1, size)
    gauss = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * 0.35 ** 2))
    return gauss.expand(count, 1, size, size)


def scores(model, images, masks, methods, batch_size=25):
    """Mean IoU per method and for the two baselines."""
    result = {"uniform": iou(torch.ones_like(masks), masks).mean().item(),
              "centre_bias": iou(binarise(centre_bias(len(masks), masks.shape[-1])), masks).mean().item()}
    for method in methods:
        raw = torch.cat([explain(model, b, method).detach() for b in images.split(batch_size)])
        maps = pixel_maps(raw, model.patch_size, METHODS[method].pixel_level)
        result[method] = iou(binarise(maps), masks).mean().item()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=["all"])
    add_device_argument(parser)
    parser.add_argument("--json", default=None, help="also write the scores here")
    args = parser.parse_args(argv)
    card = json.loads((PRETRAINED_DIR / f"{DEFAULT_MODEL}.json").read_text())
    model = create_model(device=args.device)
    images, masks, labels = validation_set(card, args.num_images)
    with torch.no_grad():
        accuracy = (model(images.to(args.device)).argmax(-1).cpu() == labels).float().mean().item()
    result = scores(model, images.to(args.device), masks.to(args.device), resolve_many(args.methods))
    print(f"{args.num_images} validation images, accuracy {accuracy:.3f}; mean IoU with the object mask:")
    for name, value in result.items():
        print(f"  {name:<26}{value:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"accuracy": accuracy, "iou": result}, indent=2))


if __name__ == "__main__":
    run(main)
