"""Write the synthetic "shapes on photos" data set (baselines/data/synthetic.py) to a folder.

Ten classes (circle, square, triangle, plus, star, ring, crescent, arrow, heart, hourglass; wnids n00000000 to
n00000009): one class object per image on a photo crop with distractors; image i of a split has class i % 10.

Layout of OUTPUT (the same seed always gives the same bytes):
  gtsegs_ijcv.mat                      validation images and object masks in the ImageNet-segmentation layout
  imagenet/meta.bin                    torch.save((wnid_to_classes, val_wnids)), as torchvision writes it
  imagenet/val/<wnid>/<name>.JPEG      validation split, torchvision.datasets.ImageNet(OUTPUT/imagenet, 'val')
  imagenet/train/<wnid>/<name>.JPEG    training split, torchvision.datasets.ImageNet(OUTPUT/imagenet, 'train')
  masks/<split>/<wnid>/<name>.png      object mask of every image, 8-bit PNG with values {0, 1}
  synthetic.json                       seed, sizes, class names and wnids of this folder
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baselines.cli import UserError, prepare_output_folder  # noqa: E402
from baselines.data import synthetic  # noqa: E402
from baselines.data.imagenet_seg import write_gtsegs  # noqa: E402

OUTPUTS = ("gtsegs_ijcv.mat", "imagenet", "masks", "synthetic.json")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="data seed; the same seed gives the same bytes")
    parser.add_argument("--num-train", type=int, default=1000,
                        help="training images to write (default 1000; train_synthetic_vit.py can also generate "
                             "its training images on the fly from the seed)")
    parser.add_argument("--num-val", type=int, default=500, help="validation images to write (default 500)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder, replacing this script's earlier outputs there")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.num_train < 0 or args.num_val < 0:
        parser.error("--seed, --num-train and --num-val must be >= 0")
    return args


def image_name(split, index):
    """File stem of image ``index`` of ``split``."""
    return f"synthetic_{split}_{index:06d}"


def write_split(output, seed, split, count):
    """Write the JPEGs and masks of one split; return its samples when it is the validation split."""
    kept = []
    for index in tqdm(range(count), desc=f"{split} images", unit="img"):
        sample = synthetic.generate(seed, split, index)
        wnid, name = synthetic.WNIDS[sample.label], image_name(split, index)
        for folder in (output / "imagenet" / split / wnid, output / "masks" / split / wnid):
            folder.mkdir(parents=True, exist_ok=True)
        (output / "imagenet" / split / wnid / f"{name}.JPEG").write_bytes(synthetic.jpeg_bytes(sample.image))
        Image.fromarray(sample.mask, "L").save(output / "masks" / split / wnid / f"{name}.png")
        if split == "val":
            kept.append(sample)
    return kept


def write_dataset(output, seed=0, num_train=1000, num_val=500, overwrite=False):
    """Write the whole data set (layout in this module's docstring) to ``output``."""
    synthetic.backgrounds()
    prepare_output_folder(output, overwrite, OUTPUTS)
    (output / "imagenet").mkdir()
    write_split(output, seed, "train", num_train)
    val = write_split(output, seed, "val", num_val)
    write_gtsegs(output / "gtsegs_ijcv.mat", [(sample.image, sample.mask) for sample in val])
    wnid_to_classes = {wnid: (name,) for wnid, name in zip(synthetic.WNIDS, synthetic.CLASS_NAMES)}
    torch.save((wnid_to_classes, [synthetic.WNIDS[sample.label] for sample in val]), output / "imagenet" / "meta.bin")
    card = {"seed": seed, "num_train": num_train, "num_val": num_val, "image_size": synthetic.IMAGE_SIZE,
            "jpeg_quality": synthetic.JPEG_QUALITY, "class_names": list(synthetic.CLASS_NAMES),
            "wnids": list(synthetic.WNIDS), "generator": "baselines/data/synthetic.py"}
    (output / "synthetic.json").write_text(json.dumps(card, indent=2) + "\n")


def main(argv=None):
    args = parse_args(argv)
    try:
        write_dataset(args.output, args.seed, args.num_train, args.num_val, args.overwrite)
    except (synthetic.MissingImageError, UserError, OSError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.num_train} training and {args.num_val} validation images to {args.output}")


if __name__ == "__main__":
    main()
