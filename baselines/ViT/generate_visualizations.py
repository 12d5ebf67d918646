"""Explain the ImageNet validation images and store the maps in TE's results.hdf5 (input of the perturbation test).

    python baselines/ViT/generate_visualizations.py --method transformer_attribution \
        --imagenet-validation-path DIR [--vis-class top|target|index --class-id K] [--subset pert_index.npy]
    torchrun --nproc_per_node N baselines/ViT/generate_visualizations.py ...   (each process takes every N-th batch)

DIR is read by torchvision.datasets.ImageNet(DIR, split='val') (meta.bin + val/<wnid>/*.JPEG). Rows: `vis` the
min-max normalised map [N, 1, 224, 224], `image` the Resize((224, 224)) -> ToTensor image, `target` the label.
The class explained: the predicted top class (`top`), the label (`target`) or --class-id (`index`).
The run is resumable: killed at any point and rerun with the same flags, it computes only the missing batches
(see baselines/eval/results.py); the output file appears only when complete.
"""
import argparse
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.eval import cli, distributed  # noqa: E402
from baselines.eval.results import InputError, ResultsWriter  # noqa: E402
from baselines.methods import METHODS, add_method_arguments, explain, method_options, pixel_maps, resolve  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_method_arguments(parser)
    parser.add_argument("--imagenet-validation-path", required=True, help="ImageNet root (meta.bin, val/)")
    parser.add_argument("--vis-class", choices=["top", "target", "index"], default="top",
                        help="class to explain: predicted (top), label (target) or --class-id (index)")
    parser.add_argument("--class-id", type=int, default=0, help="class explained with --vis-class index")
    parser.add_argument("--subset", default=None, help=".npy of dataset indices to explain (e.g. TI's pert_index.npy)")
    parser.add_argument("--output", default=None,
                        help="HDF5 file (default baselines/ViT/visualizations/{method}/{vis_class}/"
                             "{ablation|not_ablation}/results.hdf5)")
    parser.add_argument("--compression", choices=["none", "gzip"], default="none",
                        help="repack the finished file with gzip (smaller, slower; default none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute a complete output, or replace a file that holds other results")
    cli.add_common_arguments(parser, batch_size=16)
    args = parser.parse_args(argv)
    args.method = resolve(args.method)
    if args.class_index is not None:
        if args.vis_class not in ("top", "index"):
            parser.error("--class-index conflicts with --vis-class " + args.vis_class)
        args.vis_class, args.class_id = "index", args.class_index
    return args


def default_output(args):
    folder = f"index_{args.class_id}" if args.vis_class == "index" else args.vis_class
    ablation = "ablation" if args.is_ablation else "not_ablation"
    return os.path.join(HERE, "visualizations", args.method, folder, ablation, "results.hdf5")


def validation_set(path, size):
    """torchvision's ImageNet validation split; InputError (one line) when `path` is not one."""
    dataset = cli.imagenet_validation(path, size)
    if len(dataset) == 0:
        raise InputError(f"{path}: the validation set holds no images")
    return dataset


def dataset_fingerprint(dataset, indices):
    """SHA-1 of the chosen images' file names (relative to the dataset root), sizes and labels, so that results
    of a changed dataset at the same path are not taken for complete; None for a dataset without files."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return None
    root = getattr(dataset, "root", "")
    digest = hashlib.sha1()
    for index in indices:
        file, label = samples[index]
        digest.update(f"{os.path.relpath(file, root)}\0{os.path.getsize(file)}\0{label}\n".encode())
    return digest.hexdigest()


def select(num_images, subset, limit):
    """Dataset indices to explain: all, or those of the .npy subset; then the first `limit`."""
    indices = np.arange(num_images)
    if subset is not None:
        try:
            indices = np.load(subset, allow_pickle=False).reshape(-1)
        except (OSError, ValueError) as error:
            raise InputError(f"{subset}: cannot read the subset ({cli.first_line(error)})") from None
        if indices.size == 0:
            raise InputError(f"{subset}: the subset is empty")
        if not np.issubdtype(indices.dtype, np.integer) or indices.min() < 0 or indices.max() >= num_images:
            raise InputError(f"{subset}: the subset must hold integer indices in [0, {num_images})")
    return indices[:limit].astype(np.int64)


def main(argv=None):
    return cli.launch(generate, parse(argv))


def generate(args, dist, model=None, dataset=None):
    """The HDF5 for the settings `args`; `model` and `dataset` (validation_set) are loaded when not given."""
    model = model if model is not None else cli.load_model(args.model, args.weights, dist.device, args.pretrained,
                                                                      args.random_weights)
    dataset = dataset if dataset is not None else validation_set(args.imagenet_validation_path, model.img_size)
    indices = select(len(dataset), args.subset, args.limit)
    options = method_options(args)
    path = os.path.abspath(args.output or default_output(args))
    settings = {"method": args.method, "options": options, "vis_class": args.vis_class,
                "class_id": args.class_id if args.vis_class == "index" else None,
                "model": args.model or "synthetic_vit", "weights": args.weights, "pretrained": args.pretrained,
                "random_weights": args.random_weights, "weights_source": getattr(model, "weights_source", None),
                "dataset": os.path.abspath(args.imagenet_validation_path),
                "dataset_fingerprint": dataset_fingerprint(dataset, indices)}
    targets = np.asarray(dataset.targets)[indices]
    writer = ResultsWriter(path, indices, targets, (3, model.img_size, model.img_size), args.batch_size, settings,
                           dist)
    if os.path.exists(path) and not writer.is_complete() and not args.overwrite:
        raise InputError(f"{path} exists and is not this run's complete results (other settings, another dataset "
                         "or not written by this script); pass --overwrite to replace it or choose another --output")
    if writer.is_complete() and not args.overwrite:
        if dist.rank == 0:
            print(f"{path} is already complete ({len(indices)} rows); --overwrite recomputes it")
        return 0
    done = writer.open()
    pending = writer.pending(dist.rank, dist.world)
    rows = distributed.batch_rows(pending, args.batch_size, len(indices))
    data = torch.utils.data.Subset(dataset, indices[rows].tolist())
    batches = cli.loader(data, args.batch_size, args.num_workers, dist.device)
    pixel_level = METHODS[args.method].pixel_level
    start = time.perf_counter()
    progress = tqdm(batches, total=len(pending), disable=dist.rank != 0, desc=f"{args.method} ({done} done)")
    for batch, (images, labels) in zip(pending, progress):
        images, labels = cli.to_unit(images, dist.device), labels.to(dist.device, non_blocking=True)
        target = {"top": None, "target": labels, "index": args.class_id}[args.vis_class]
        raw = explain(model, cli.normalise(images, model), args.method, class_index=target, **options)
        vis = pixel_maps(raw.detach(), model.patch_size, pixel_level=pixel_level)
        writer.write(batch, vis, images)
    writer.finalize(None if args.compression == "none" else args.compression)
    if dist.rank == 0:
        print(f"wrote {path}: {len(indices)} rows, {len(rows)} computed by this process in "
              f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
