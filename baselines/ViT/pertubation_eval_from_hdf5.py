"""Perturbation test of TE (file name as the original, so the papers' commands work).

    python baselines/ViT/pertubation_eval_from_hdf5.py --method transformer_attribution [--neg] [--vis-class top]
    torchrun --nproc_per_node N baselines/ViT/pertubation_eval_from_hdf5.py ...

Reads the results.hdf5 of generate_visualizations.py. For every image: the model's prediction on the clean image
and on 9 copies with the int(224 * 224 * s) most relevant pixels (least relevant with --neg) set to 0 in [0, 1]
space, s = 0.1, ..., 0.9; accuracy against the label. Positive perturbation (default): lower AUC is better;
--neg: higher is better. All 10 x batch forwards of a batch run as one model call, on the device.
Writes results.json (accuracy per step, AUC as TE's maintainer computes it and TI's variant, prob/logit drops,
and AttnLRP's area between the least- and most-relevant-first curves of the explained class's logit and probability,
which runs the other removal order too; --no-abpc skips it), perturbation_hits.npy ([N, 10] correct or not) and
perturbation_curve.png.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.eval import cli, distributed, metrics  # noqa: E402
from baselines.eval.results import InputError, ResultsBatches, check_results  # noqa: E402
from baselines.methods import ALIASES, METHOD_NAMES, resolve  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", required=True, choices=METHOD_NAMES + list(ALIASES), metavar="M",
                        help="method whose maps are evaluated: " + ", ".join(METHOD_NAMES))
    parser.add_argument("--vis-class", choices=["top", "target", "index"], default="top")
    parser.add_argument("--class-id", type=int, default=0, help="with --vis-class index: the folder index_K")
    parser.add_argument("--is-ablation", action="store_true", help="read the 'ablation' folder")
    parser.add_argument("--neg", action="store_true",
                        help="negative perturbation: remove the least relevant pixels first")
    parser.add_argument("--no-abpc", action="store_true",
                        help="skip AttnLRP's area between the perturbation curves (saves the other order's 9 "
                             "forwards per image)")
    parser.add_argument("--input", default=None,
                        help="results.hdf5 (default: generate_visualizations.py's default path for these flags)")
    parser.add_argument("--output", default=None,
                        help="output folder (default experiments/perturbations/{method}_{neg|pos}/{vis_class}/"
                             "{ablation|not_ablation}/experiment_K)")
    cli.add_common_arguments(parser, batch_size=16)
    args = parser.parse_args(argv)
    args.method = resolve(args.method)
    args.folder = f"index_{args.class_id}" if args.vis_class == "index" else args.vis_class
    args.ablation = "ablation" if args.is_ablation else "not_ablation"
    return args


ABPC_COLUMNS = 4 * (len(metrics.PERTURBATION_STEPS) + 1)


def evaluate_batch(model, images, vis, target, neg, explained=None):
    """Per-image rows [B, 10 + 9 + 9]: hits (clean, steps), max-probability drops, max-logit drops; with
    ``explained`` ([B] the class each map explains) also [B, 4 x 10]: that class's logit along the MoRF and LeRF
    orders, then its probability along them (the other order runs in the same model call).

    The model input normalise(image * keep) is formed in one pass as where(keep, normalise(image), normalise(0)).
    """
    keep = metrics.kept_pixels(vis, neg)
    steps = len(keep) + 1
    parts = [torch.ones_like(keep[:1]), keep] + ([] if explained is None else [metrics.kept_pixels(vis, not neg)])
    fill = cli.normalise(torch.zeros_like(images[:1, :, :1, :1]), model)
    inputs = torch.where(torch.cat(parts), cli.normalise(images, model).unsqueeze(0), fill)
    batch = inputs.shape[1]
    all_logits = model(inputs.flatten(0, 1)).view(len(inputs), batch, -1).float()
    logits = all_logits[:steps]
    hits = logits.argmax(-1) == target.view(1, -1)
    top_prob = logits.softmax(-1).amax(-1)
    top_logit = logits.amax(-1)
    columns = [hits.float().T, (top_prob[:1] - top_prob[1:]).T, (top_logit[:1] - top_logit[1:]).T]
    if explained is not None:
        index = explained.view(1, -1, 1).expand(len(all_logits), -1, 1)
        logit = all_logits.gather(2, index)[..., 0]
        prob = all_logits.softmax(-1).gather(2, index)[..., 0]
        for score in (logit, prob):
            this, other = score[:steps], torch.cat([score[:1], score[steps:]])
            morf, lerf = (other, this) if neg else (this, other)
            columns += [morf.T, lerf.T]
    return torch.cat(columns, 1).cpu().double().numpy()


def check_batch(path, vis, target, num_classes):
    """Maps must be finite and labels among the model's classes: either would give a wrong AUC, not an error."""
    if not torch.isfinite(vis).all():
        raise InputError(f"{path} holds maps with NaN or infinite values")
    if ((target < 0) | (target >= num_classes)).any():
        raise InputError(f"{path} holds labels outside the model's {num_classes} classes "
                         f"({int(target.min())}..{int(target.max())})")


def explained_classes(model, images, target, args):
    """The class each map explains: the clean prediction (--vis-class top), the label (target) or --class-id."""
    if args.vis_class == "target":
        return target
    if args.vis_class == "index":
        return torch.full_like(target, args.class_id)
    return model(cli.normalise(images, model)).argmax(-1)


def main(argv=None):
    return cli.launch(evaluate, parse(argv))


def evaluate(args, dist, model=None):
    """The test for the settings `args`; `model` (the one that wrote the maps, by default) is loaded when not
    given."""
    path = args.input or os.path.join(HERE, "visualizations", args.method, args.folder, args.ablation,
                                      "results.hdf5")
    num_rows, attrs = check_results(path, args.method, canonical=resolve)
    written_class = attrs.get("vis_class")
    if written_class is not None and str(written_class) != args.vis_class:
        raise InputError(f"{path} holds --vis-class {written_class} maps, not {args.vis_class}")
    num_rows = min(num_rows, args.limit or num_rows)
    written = json.loads(attrs.get("settings", "{}"))
    model_name = args.model or written.get("model")
    given = args.weights or args.pretrained or args.random_weights
    source = written if args.model is None and not given else vars(args)
    weights, pretrained = source.get("weights"), source.get("pretrained", False)
    if model is None:
        model = cli.load_model(model_name, weights, dist.device, pretrained, source.get("random_weights", False))
    batches = distributed.shard(num_rows, args.batch_size, dist.rank, dist.world)
    data = torch.utils.data.DataLoader(ResultsBatches(path, args.batch_size, batches, num_rows), batch_size=None,
                                       num_workers=args.num_workers, pin_memory=dist.device.type == "cuda")
    records = [np.zeros((0, 28 + (0 if args.no_abpc else ABPC_COLUMNS)))]
    with torch.inference_mode():
        for _, images, vis, target in tqdm(data, disable=dist.rank != 0, desc=f"{args.method} perturbation"):
            device = dist.device
            images, target = images.to(device, non_blocking=True), target.to(device).long()
            check_batch(path, vis, target, model.num_classes)
            explained = None if args.no_abpc else explained_classes(model, images, target, args)
            records.append(evaluate_batch(model, images, vis.to(device, non_blocking=True), target, args.neg,
                                          explained))
    rows = distributed.merge(dist, distributed.batch_rows(batches, args.batch_size, num_rows),
                             np.concatenate(records))
    if dist.rank == 0:
        report(args, path, model_name, weights, pretrained, model, rows, dist.world)
    return 0


def report(args, path, model_name, weights, pretrained, model, rows, world):
    steps = len(metrics.PERTURBATION_STEPS)
    summary = metrics.perturbation_summary(rows[:, :steps + 1], rows[:, steps + 1:2 * steps + 1],
                                           rows[:, 2 * steps + 1:3 * steps + 1])
    if not args.no_abpc:
        curves = rows[:, 3 * steps + 1:].reshape(len(rows), 4, steps + 1)
        summary.update(metrics.abpc_summary(*curves.transpose(1, 0, 2)))
    name = f"{args.method}_{'neg' if args.neg else 'pos'}"
    out = args.output or cli.experiment_dir(os.path.join("experiments", "perturbations", name, args.folder,
                                                         args.ablation))
    os.makedirs(out, exist_ok=True)
    settings = {"benchmark": "perturbation", "method": args.method, "neg": args.neg, "vis_class": args.vis_class,
                "class_id": args.class_id if args.vis_class == "index" else None, "is_ablation": args.is_ablation,
                "model": model_name or "synthetic_vit", "weights": weights, "pretrained": pretrained,
                "weights_source": getattr(model, "weights_source", None), "input": os.path.abspath(path),
                "batch_size": args.batch_size, "limit": args.limit, "world_size": world}
    hits = os.path.join(out, "perturbation_hits.npy")
    np.save(hits + ".tmp.npy", rows[:, :steps + 1].astype(np.int8))
    os.replace(hits + ".tmp.npy", hits)
    cli.write_json(os.path.join(out, "results.json"), {**settings, **summary})
    plot(summary, name, os.path.join(out, "perturbation_curve.png"))
    print(f"{name} ({summary['num_images']} images): accuracy "
          + " ".join(f"{a:.4f}" for a in summary["accuracy"])
          + f"\nAUC {summary['auc']:.2f} (TE), {summary['auc_ti']:.2f} (TI, with (1, 0))"
          + ("" if args.no_abpc else f"; ABPC logit {summary['abpc_logit']:.3f}, prob {summary['abpc_prob']:.4f}")
          + f"; results in {out}")


def plot(summary, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot(summary["steps"], summary["accuracy"], marker="o")
    axes.set(xlabel="fraction of pixels removed", ylabel="top-1 accuracy", ylim=(0, 1.02),
             title=f"{title}: AUC {summary['auc']:.2f}")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path + ".tmp.png", dpi=100)
    plt.close(figure)
    os.replace(path + ".tmp.png", path)


if __name__ == "__main__":
    sys.exit(cli.run(main))
