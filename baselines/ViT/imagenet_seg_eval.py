"""ImageNet-segmentation test of TE: how well a thresholded explanation map segments the object.

    python baselines/ViT/imagenet_seg_eval.py --method transformer_attribution --imagenet-seg-path gtsegs_ijcv.mat
    torchrun --nproc_per_node N baselines/ViT/imagenet_seg_eval.py ...   (each process takes every N-th batch)

Per image (Resize((224, 224)) -> ToTensor -> Normalize(model mean, std); mask resized with NEAREST): the map of
the predicted top class (or --class-index), upsampled and min-max normalised, is thresholded at its mean.
Pixel accuracy and mIoU are accumulated over the dataset, mAP and mF1 are means of per-image values
(formulas in baselines/eval/metrics.py). Prints them and writes results.json with the settings.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.eval import cli, distributed, metrics  # noqa: E402
from baselines.eval.results import InputError  # noqa: E402
from baselines.methods import METHODS, add_method_arguments, explain, method_options, pixel_maps, resolve  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_method_arguments(parser)
    parser.add_argument("--imagenet-seg-path", required=True, help="gtsegs_ijcv.mat")
    parser.add_argument("--save-img", action="store_true", help="also write input, mask and heatmap PNGs")
    parser.add_argument("--output", default=None,
                        help="output folder (default run/imagenet/{method}_{model}/experiment_K)")
    cli.add_common_arguments(parser, batch_size=16)
    args = parser.parse_args(argv)
    args.method = resolve(args.method)
    return args


def segmentation_set(path, size):
    """ImagenetSegmentation with TE's transforms (image without normalisation; mask NEAREST -> long)."""
    from baselines.data.imagenet_seg import ImagenetSegmentation

    mask_transform = transforms.Compose([transforms.Resize((size, size), Image.NEAREST),
                                         lambda mask: torch.from_numpy(np.array(mask, dtype=np.int64))])
    try:
        dataset = ImagenetSegmentation(path, transform=cli.image_transform(size), target_transform=mask_transform)
    except ValueError as error:
        raise InputError(cli.first_line(error)) from None
    if len(dataset) == 0:
        raise InputError(f"{path}: the file holds no images")
    return dataset


def save_images(folder, rows, images, masks, maps):
    """input / mask / heatmap-over-input PNGs named by dataset index."""
    from matplotlib import colormaps

    os.makedirs(folder, exist_ok=True)
    jet = colormaps["jet"]
    for row, image, mask, heat in zip(rows, images.cpu(), masks.cpu(), maps.cpu()):
        picture = image.permute(1, 2, 0).numpy()
        overlay = 0.5 * picture + 0.5 * jet(heat[0].numpy())[..., :3]
        for name, array in (("input", picture), ("mask", mask.numpy()), ("heatmap", overlay)):
            Image.fromarray(np.uint8(np.clip(array, 0, 1) * 255)).save(os.path.join(folder, f"{row:05d}_{name}.png"))


def main(argv=None):
    return cli.launch(evaluate, parse(argv))


def evaluate(args, dist, model=None, dataset=None):
    """The test for the settings `args`; `model` and `dataset` (segmentation_set) are loaded when not given."""
    model = model if model is not None else cli.load_model(args.model, args.weights, dist.device, args.pretrained,
                                                                      args.random_weights)
    dataset = dataset if dataset is not None else segmentation_set(args.imagenet_seg_path, model.img_size)
    num_rows = min(len(dataset), args.limit or len(dataset))
    name = os.path.basename(args.model or "synthetic_vit").replace(":", "_")
    base = os.path.join("run", "imagenet", f"{args.method}_{name}")
    out = dist.gather(args.output or (cli.experiment_dir(base) if dist.rank == 0 else None))[0]
    batches = distributed.shard(num_rows, args.batch_size, dist.rank, dist.world)
    rows = distributed.batch_rows(batches, args.batch_size, num_rows)
    data = cli.loader(torch.utils.data.Subset(dataset, rows), args.batch_size, args.num_workers, dist.device)
    options = method_options(args)
    pixel_level = METHODS[args.method].pixel_level
    records, position = [np.zeros((0, len(metrics.SEG_FIELDS)))], 0
    for images, masks in tqdm(data, disable=dist.rank != 0, desc=f"{args.method} segmentation"):
        images, masks = cli.to_unit(images, dist.device), masks.to(dist.device, non_blocking=True)
        raw = explain(model, cli.normalise(images, model), args.method, class_index=args.class_index, **options)
        maps = pixel_maps(raw.detach(), model.patch_size, pixel_level=pixel_level)
        records.append(metrics.segmentation_rows(maps, masks))
        if args.save_img:
            save_images(os.path.join(out, "images"), rows[position:position + len(images)], images, masks, maps)
        position += len(images)
    merged = distributed.merge(dist, rows, np.concatenate(records))
    if dist.rank == 0:
        summary = metrics.segmentation_summary(merged)
        settings = {"benchmark": "segmentation", "method": args.method, "options": options,
                    "class_index": args.class_index, "model": args.model or "synthetic_vit", "weights": args.weights,
                    "pretrained": args.pretrained, "weights_source": getattr(model, "weights_source", None),
                    "dataset": os.path.abspath(args.imagenet_seg_path), "batch_size": args.batch_size,
                    "limit": args.limit, "world_size": dist.world}
        cli.write_json(os.path.join(out, "results.json"), {**settings, **summary})
        print(f"{args.method} ({summary['num_images']} images): pixel accuracy {100 * summary['pixel_accuracy']:.2f}"
              f"  mIoU {100 * summary['mean_iou']:.2f}  mAP {100 * summary['mean_ap']:.2f}"
              f"  mF1 {100 * summary['mean_f1']:.2f}  (results in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
