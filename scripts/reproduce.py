"""Reproduce the papers' tables in one resumable command: every method through every test, then one report.

    python scripts/reproduce.py --suite mini                     # offline, CPU: synthetic data, shipped tiny ViT,
                                                                 # MiniLM fine-tuned on the offline ERASER data
    python scripts/reproduce.py --suite paper --data-root data/  # real data and the papers' weights, on a GPU
    torchrun --nproc_per_node N scripts/reproduce.py --suite paper ...   (ViT steps shard over the processes)

The run is planned as steps (method x test x setting: segmentation; visualizations of the predicted and the target
class, each through positive and negative perturbation; ERASER token-F1 for k = 5..80; BERT Movies perturbation,
positive and negative) plus data generation and fine-tuning (mini). One progress bar runs over the plan; each step
calls its script's own evaluate function in this process with the model and data loaded once. A step whose result
exists with the same settings is skipped, so a run killed at any point continues where it stopped, and a changed
setting reruns only the steps it affects (see baselines/suite/plan.py). Every input (data, weights, method names) is
checked before any work, each missing one named on its own line with where to get it.

OUTPUT gets RESULTS.md, results.csv, results.json, figures/, steps/ (one record per finished step), runs/ and bert/
(the scripts' own outputs), logs/ (each step's printed output) and run.json (this run's timings).

mini (defaults): 64 synthetic validation images, 160 generated reviews (128 train / 16 val / 16 test; perturbation
on the test split), all methods, batch 16 images / 8 documents. paper: gtsegs_ijcv.mat (4,276 images), ImageNet val
restricted to TI's pert_index.npy, ERASER Movies, TE's ViT-B/16 JAX weights and TE's BERT settings
(BERT_params/movies_bert.json; --bert-checkpoint to use TE's fine-tuned classifier.pt), BERT perturbation on every
split (TI). DATA_ROOT (paper) holds gtsegs_ijcv.mat, imagenet/, pert_index.npy, movies/ and the weights file.
"""
import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from baselines.eval import cli, distributed  # noqa: E402
from baselines.methods import METHOD_NAMES  # noqa: E402
from baselines.suite import suites  # noqa: E402
from baselines.suite.plan import UNREADABLE_NOTE, Store  # noqa: E402
from baselines.suite.report import Report  # noqa: E402
from baselines.suite.steps import RUNNERS, Context  # noqa: E402

TEST_ALIASES = {"seg": "segmentation", "pert": "perturbation", "bert-pert": "bert-perturbation"}
IMAGE_KINDS = {"segmentation", "visualizations", "perturbation"}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, choices=["mini", "paper"])
    parser.add_argument("--methods", nargs="+", default=["all"], metavar="M",
                        help="image methods, or 'all' (default: every method of the registry)")
    parser.add_argument("--text-methods", nargs="+", default=["all"], metavar="M",
                        help="text methods, or 'all' (default: every method of the registry)")
    parser.add_argument("--tests", default=",".join(suites.TESTS),
                        help="comma-separated subset of " + ", ".join(suites.TESTS) + " (seg, pert and bert-pert "
                             "also work; default all)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default outputs/reproduce_SUITE)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="mini: where the generated data is cached (default OUTPUT/data); paper: the real data "
                             "(default data/)")
    parser.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--vit-model", default=None, help="timm ViT name (paper default vit_base_patch16_224)")
    parser.add_argument("--vit-weights", "--weights", default=None,
                        help="ViT checkpoint (paper default DATA_ROOT/jx_vit_base_p16_224-80ecf9dd.pth)")
    parser.add_argument("--bert-params", default=None, help="params JSON of the text classifier (mini "
                        "BERT_params/movies_minilm.json, paper BERT_params/movies_bert.json)")
    parser.add_argument("--bert-checkpoint", default=None,
                        help="a fine-tuned classifier state dict to use instead of fine-tuning")
    parser.add_argument("--num-images", type=int, default=None,
                        help="mini: validation images generated (default 64); paper: use only the first N")
    parser.add_argument("--num-docs", type=int, default=None, help="mini: reviews generated (default 160)")
    parser.add_argument("--perturbation-docs", type=int, default=None,
                        help="BERT perturbation: only the first N documents of its splits")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (mini 16, paper 32)")
    parser.add_argument("--text-batch-size", type=int, default=None, help="documents per batch (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="mini: data seed (default 0)")
    return parser.parse_args(argv)


def make_config(args):
    defaults = dict(suites.MINI if args.suite == "mini" else suites.PAPER)
    output = args.output or Path("outputs") / f"reproduce_{args.suite}"
    data_root = args.data_root or (output / "data" if args.suite == "mini" else Path("data"))
    tests = [TEST_ALIASES.get(t.strip(), t.strip()) for t in args.tests.split(",") if t.strip()]
    unknown = [t for t in tests if t not in suites.TESTS]
    if unknown:
        raise cli.InputError(f"unknown test(s) {', '.join(unknown)} (choose from {', '.join(suites.TESTS)})")
    overrides = {"vit_model": args.vit_model, "vit_weights": args.vit_weights, "bert_params": args.bert_params,
                 "num_images": args.num_images, "num_docs": args.num_docs, "image_batch": args.batch_size,
                 "text_batch": args.text_batch_size}
    defaults.update({key: value for key, value in overrides.items() if value is not None})
    if args.suite == "paper" and args.vit_weights is None:
        defaults["vit_weights"] = str(data_root / defaults["vit_weights"])
    for name in ("num_images", "num_docs", "image_batch", "text_batch", "perturbation_docs"):
        value = defaults[name] if name in defaults else getattr(args, name)
        if value is not None and value < 1:
            raise cli.InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.suite == "mini" and defaults["num_docs"] < 10:
        raise cli.InputError("--num-docs must be at least 10 (every split needs reviews)")
    device = args.device or ("cuda" if _cuda() else "cpu")
    return suites.Config(suite=args.suite, output=output, data_root=data_root, device=device,
                         methods=_names(args.methods), text_methods=_names(args.text_methods), tests=tuple(tests),
                         seed=args.seed, bert_checkpoint=args.bert_checkpoint,
                         perturbation_docs=args.perturbation_docs, **defaults)


def _cuda():
    import torch
    return torch.cuda.is_available()


def _names(names):
    return list(METHOD_NAMES) if list(names) == ["all"] else list(names)


def run_plan(steps, context, store, dist):
    """Run the unfinished steps in order under one progress bar; returns (records, timings)."""
    records, timings = [], {}
    logs = context.config.output / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bar = tqdm(steps, desc="reproduce", unit="step", file=sys.stderr, disable=dist.rank != 0)
    for step in bar:
        state, record = store.state(step)
        mine = dist.rank == 0 or step.kind in IMAGE_KINDS
        if state != "done" and mine:
            bar.set_postfix_str(step.key)
            wall, cpu = time.perf_counter(), time.process_time()
            log_path = logs / (step.key.replace("/", "__") + ".log")
            try:
                with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    result = RUNNERS[step.kind](context, step)
            except (cli.InputError, ValueError, OSError) as error:
                raise cli.InputError(f"step {step.key}: {cli.first_line(error)} (log: {log_path})") from None
            timings[step.key] = {"wall_s": round(time.perf_counter() - wall, 2),
                                 "cpu_s": round(time.process_time() - cpu, 2)}
            if dist.rank == 0:
                record = store.save(step, result, UNREADABLE_NOTE if state == "unreadable" else None)
                cli.write_json(str(context.config.output / "run.json"), {"steps": timings})
        dist.barrier()
        records.append(record if dist.rank == 0 else None)
    return records, timings


def main(argv=None):
    args = parse(argv)
    config = make_config(args)
    problems = suites.check_inputs(config, config.methods, config.text_methods)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    steps = suites.plan(config)
    dist = distributed.setup(config.device)
    try:
        config.device = str(dist.device)
        started, cpu = time.perf_counter(), time.process_time()
        records, timings = run_plan(steps, Context(config, dist), Store(config.output), dist)
        if dist.rank != 0:
            return 0
        path = Report(config, steps, records).write(config.output)
        total = {"wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu, 1),
                 "steps": len(steps), "ran": len(timings), "threads": _threads(), "cpus": os.cpu_count()}
        cli.write_json(str(config.output / "run.json"), {"total": total, "steps": timings})
        print(f"{len(timings)} of {len(steps)} steps run ({len(steps) - len(timings)} already done) in "
              f"{total['wall_s']} s wall, {total['cpu_s']} s CPU; report: {path}")
    finally:
        dist.close()
    return 0


def _threads():
    import torch
    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(cli.run(main))
