"""Where one method's time goes: its phases and, from torch's profiler, the share of matrix products.

Phases, timed in place over ``--calls`` calls (medians): the backward to the attention maps (every
``torch.autograd.grad``), the relevance pass (the outermost ``relprop`` of the model), the rollout products
(``rollout_row`` / ``query_row``) and the rest (the recording forward, the cams, bookkeeping). Then one profiled call
split into matrix products (``mm``, ``addmm``, ``bmm``, convolutions) and everything else, with the ten costliest
operations by input shape. The models and batches are those of ``scripts/bench_explain.py``.

    python scripts/profile_method.py --model deit_small_patch16_224 --method transformer_attribution
    python scripts/profile_method.py --model minilm --length 256 --method full_lrp
"""
import argparse
import collections
import functools
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from baselines.cli import UserError, run  # noqa: E402
from baselines.methods import attention, beyond_intuition, lrp, resolve_many  # noqa: E402
from baselines.models import bert, clip, vit  # noqa: E402
from baselines.relevance import layers  # noqa: E402
from scripts.bench_explain import add_subject_arguments, subject_from, synchronise  # noqa: E402

MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution"}


class PhaseClock:
    """Seconds spent inside the wrapped functions, per phase; a call inside another timed call is not counted
    again."""

    def __init__(self):
        self.spent = collections.Counter()
        self.depth = 0

    def wrap(self, phase, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[phase] += time.perf_counter() - began
                self.depth -= 1
        return timed


@contextmanager
def installed(clock):
    """Wrap the phases' entry points inside the block (gradients, ``relprop`` of every model and layer class, the
    rollout products); the originals come back on exit."""
    targets = [(torch.autograd, "grad", "backward to the attention maps")]
    for module in (vit, bert, clip, layers):
        targets += [(cls, "relprop", "relevance pass") for cls in vars(module).values()
                    if isinstance(cls, type) and "relprop" in vars(cls)]
    for module in (attention, beyond_intuition, lrp):
        targets += [(module, name, "rollout products") for name in ("rollout_row", "query_row") if hasattr(module, name)]
    originals = [(owner, name, vars(owner)[name]) for owner, name, _ in targets]
    for owner, name, phase in targets:
        setattr(owner, name, clock.wrap(phase, vars(owner)[name]))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_subject_arguments(parser)
    parser.add_argument("--method", default="transformer_attribution")
    parser.add_argument("--calls", type=int, default=7, help="timed calls; medians over them")
    args = parser.parse_args(argv)
    if args.calls < 1:
        raise UserError("--calls must be at least 1")
    (args.method,) = resolve_many([args.method])
    return args


def main(argv=None):
    args = parse_args(argv)
    subject, device = subject_from(args)
    clock = PhaseClock()
    subject.explain(args.method)
    calls = []
    with installed(clock):
        for _ in tqdm(range(args.calls), desc="timed calls", leave=False):
            clock.spent.clear()
            began = time.perf_counter()
            subject.explain(args.method)
            synchronise(device)
            total = time.perf_counter() - began
            calls.append({**clock.spent, "rest (forward, cams, bookkeeping)": total - sum(clock.spent.values()),
                          "total": total})
    print(f"{args.method} on {subject.label}, {device}, {torch.get_num_threads()} threads, median of {args.calls}")
    total = statistics.median(c["total"] for c in calls)
    for phase in ("backward to the attention maps", "relevance pass", "rollout products",
                  "rest (forward, cams, bookkeeping)", "total"):
        seconds = statistics.median(c.get(phase, 0.0) for c in calls)
        print(f"  {phase:<36}{seconds * 1e3:>10.1f} ms {seconds / total:>7.1%}")

    with torch.profiler.profile(record_shapes=True) as profiler:
        subject.explain(args.method)
    events = profiler.key_averages(group_by_input_shape=True)
    self_ms = [(e.self_cpu_time_total / 1e3, e.key, e.count, str(e.input_shapes)) for e in events]
    whole = sum(ms for ms, *_ in self_ms)
    products = sum(ms for ms, key, *_ in self_ms if key in MATRIX_PRODUCTS)
    print(f"profiled call: {whole:.0f} ms of operator CPU time, matrix products {products / whole:.1%}")
    for ms, key, count, shapes in sorted(self_ms, reverse=True)[:10]:
        print(f"  {ms:>8.1f} ms {key:<28}{count:>5}x  {shapes[:70]}")


if __name__ == "__main__":
    run(main)
