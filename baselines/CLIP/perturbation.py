"""Beyond Intuition's zero-shot CLIP perturbation test (TI ``CLIP/visualisation.py``), batched.

    python baselines/CLIP/perturbation.py --method generic_attribution --data DATA/imagenet [--neg] [--target]
    torchrun --nproc_per_node N baselines/CLIP/perturbation.py ...   (each process takes every N-th batch)

Zero-shot classes: the prompts "a photo of a {class}" over the folder's classes (torchvision ImageNet layout; the
first name of each class). Per image: the map of the predicted class (--target: the label's), upsampled bilinearly
and min-max normalised; the int(P k) most relevant pixels (least relevant with --neg) of the *normalised* image set
to 0, k = 0, 0.1, ..., 1 (TI's convention, unlike TE's [0, 1]-space zero); accuracy against the label. All 11
copies of a batch run as one model call. Prints accuracy per step, TI's AUC (100 * trapezoid over the 11 points,
sklearn's auc of TI's script) and TE's (over k = 0 .. 0.9); writes results.json and perturbation_hits.npy.
--pert-index FILE (TI's pert_index.npy) takes only those dataset rows.
The ImageNet segmentation test with a zero-shot CLIP is baselines/ViT/imagenet_seg_eval.py --model CLIP_NAME.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.eval import cli, distributed, metrics  # noqa: E402
from baselines.eval.results import InputError  # noqa: E402
from baselines.methods import METHODS, add_method_arguments, explain, method_options, pixel_maps, resolve  # noqa: E402

LEVELS = tuple(k / 10 for k in range(1, 11))
"""Fractions of removed pixels after the clean image (TI's --perturbation_level 0, 0.1, ..., 1)."""


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_method_arguments(parser, default="rollout")
    parser.add_argument("--data", required=True,
                        help="ImageNet-layout folder (meta.bin, val/<wnid>/...), e.g. the synthetic data's imagenet/")
    parser.add_argument("--neg", action="store_true", help="remove the least relevant pixels first")
    parser.add_argument("--target", action="store_true",
                        help="explain the label's class (default: the zero-shot prediction, as TI)")
    parser.add_argument("--pert-index", default=None, metavar="FILE",
                        help="an int .npy of dataset rows to use (TI's pert_index.npy: 5000 ImageNet-val images)")
    parser.add_argument("--output", default=None,
                        help="output folder (default experiments/clip_perturbation/{method}_{neg|pos}/experiment_K)")
    cli.add_common_arguments(parser, batch_size=16,
                             model_help="a CLIP: shipped name (default synthetic_clip), open_clip architecture name "
                                        "with --weights (OpenAI .pt, open_clip or Hugging Face weights)")
    args = parser.parse_args(argv)
    args.method = resolve(args.method)
    if args.model is None:
        args.model = "synthetic_clip"
    return args


def zero_shot_set(folder, size, pert_index=None):
    """The folder's validation images (Resize((size, size)), uint8) and the first name of each class."""
    dataset = cli.imagenet_validation(folder, size)
    names = [c[0] if isinstance(c, (tuple, list)) else c for c in dataset.classes]
    rows = np.arange(len(dataset))
    if pert_index is not None:
        try:
            rows = np.load(pert_index).astype(np.int64).ravel()
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read --pert-index {pert_index}: {cli.first_line(error)}") from None
        if len(rows) and (rows.min() < 0 or rows.max() >= len(dataset)):
            raise InputError(f"--pert-index {pert_index} names rows outside the {len(dataset)} images")
    return dataset, names, rows


def evaluate_batch(model, images, labels, vis, neg):
    """Hits [B, 11] (clean, then each level) with the removed pixels of the normalised images set to 0."""
    keep = metrics.kept_pixels(vis, neg, LEVELS)
    normalised = cli.normalise(images, model)
    inputs = torch.cat([normalised.unsqueeze(0), normalised.unsqueeze(0) * keep.to(normalised.dtype)])
    logits = model(inputs.flatten(0, 1)).view(len(inputs), images.shape[0], -1)
    return (logits.argmax(-1) == labels.view(1, -1)).T.cpu().numpy()


def main(argv=None):
    return cli.launch(evaluate, parse(argv))


def evaluate(args, dist):
    from baselines.models import create_model
    try:
        clip = create_model(args.model, args.weights).to(dist.device)
    except (ValueError, OSError) as error:
        raise InputError(f"cannot load model {args.model}: {cli.first_line(error)}") from None
    if not hasattr(clip, "zero_shot"):
        raise InputError(f"{args.model} is not a CLIP")
    dataset, names, all_rows = zero_shot_set(args.data, clip.img_size, args.pert_index)
    model = clip.zero_shot(names)
    num_rows = min(len(all_rows), args.limit or len(all_rows))
    batches = distributed.shard(num_rows, args.batch_size, dist.rank, dist.world)
    rows = distributed.batch_rows(batches, args.batch_size, num_rows)
    data = cli.loader(torch.utils.data.Subset(dataset, all_rows[rows].tolist()), args.batch_size, args.num_workers,
                      dist.device)
    options = method_options(args)
    records = [np.zeros((0, len(LEVELS) + 1))]
    for images, labels in tqdm(data, disable=dist.rank != 0, desc=f"{args.method} zero-shot perturbation"):
        images, labels = cli.to_unit(images, dist.device), labels.to(dist.device)
        normalised = cli.normalise(images, model)
        with torch.no_grad():
            predicted = model(normalised).argmax(-1)
        raw = explain(model, normalised, args.method, class_index=labels if args.target else predicted, **options)
        vis = pixel_maps(raw.detach(), model.patch_size, pixel_level=METHODS[args.method].pixel_level)
        with torch.no_grad():
            records.append(evaluate_batch(model, images, labels, vis, args.neg))
    merged = distributed.merge(dist, rows, np.concatenate(records))
    if dist.rank == 0:
        report(args, options, merged, dist.world)
    return 0


def report(args, options, hits, world):
    accuracy = np.asarray(hits, dtype=np.float64).mean(0)
    x = [0.0, *LEVELS]
    summary = {"steps": x, "accuracy": accuracy.tolist(),
               "auc_ti": float(np.trapezoid(accuracy * 100, x)),
               "auc_te": metrics.auc_te(accuracy[:-1], LEVELS[:-1]), "num_images": int(len(hits))}
    name = f"{args.method}_{'neg' if args.neg else 'pos'}"
    out = args.output or cli.experiment_dir(os.path.join("experiments", "clip_perturbation", name))
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "perturbation_hits.npy"), np.asarray(hits, dtype=np.int8))
    settings = {"benchmark": "clip_zero_shot_perturbation", "method": args.method, "options": options,
                "neg": args.neg, "target": args.target, "model": args.model, "weights": args.weights,
                "data": os.path.abspath(args.data), "pert_index": args.pert_index, "batch_size": args.batch_size,
                "limit": args.limit, "world_size": world}
    cli.write_json(os.path.join(out, "results.json"), {**settings, **summary})
    print(f"{name} ({summary['num_images']} images): accuracy " + " ".join(f"{a:.4f}" for a in accuracy)
          + f"\nAUC {summary['auc_ti']:.2f} (TI, k = 0 .. 1), {summary['auc_te']:.2f} (TE, k = 0 .. 0.9); "
          f"results in {out}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
