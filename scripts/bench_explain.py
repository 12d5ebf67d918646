"""Time every explanation method against the plain timm model, on one random batch, in one run.

Prints, per method: seconds per image, the ratio to timm's forward+backward (a training step: weights require
grad), the ratio to the floor (forward + backward to the input with frozen weights), and peak memory above the
resting state (CUDA: allocator peak; CPU: peak resident set size, read from /proc).

    python scripts/bench_explain.py --model deit_small_patch16_224 --batch-size 8 --json bench.json
"""
import argparse
import ctypes
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
import torch  # noqa: E402

from baselines.cli import default_device, run  # noqa: E402
from baselines.methods import explain, resolve_many  # noqa: E402
from baselines.models import create_model  # noqa: E402
from baselines.models.vit import load_weights  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224", help="timm ViT name (random weights)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["all"], help="methods to time (default all)")
    parser.add_argument("--steps", type=int, default=20, help="integrated-gradient steps of beyond_intuition_*")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per entry; the median is kept")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the figures as JSON")
    return parser.parse_args(argv)


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device, repeats):
    fn()
    times = []
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        fn()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def baselines_of(reference, images, target):
    """The three reference costs: plain forward, training-style forward+backward, and the explanation floor."""
    def forward():
        with torch.no_grad():
            reference(images)

    def forward_backward():
        reference.zero_grad(set_to_none=True)
        reference(images).gather(1, target[:, None]).sum().backward()

    def floor():
        for p in reference.parameters():
            p.requires_grad_(False)
        x = images.clone().requires_grad_()
        torch.autograd.grad(reference(x).gather(1, target[:, None]).sum(), x)
        for p in reference.parameters():
            p.requires_grad_(True)

    return {"fwd": forward, "fwd_bwd": forward_backward, "floor": floor}


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    reference = timm.create_model(args.model).eval().to(device)
    ours = load_weights(create_model(args.model), reference.state_dict()).to(device)
    size = ours.img_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    with torch.no_grad():
        target = reference(images).argmax(-1)
    per_image = args.batch_size
    base = {name: seconds(fn, device, args.repeats) / per_image
            for name, fn in baselines_of(reference, images, target).items()}
    fwd_bwd_peak = peak_mb(baselines_of(reference, images, target)["fwd_bwd"], device)
    print(f"{args.model}, batch {args.batch_size}, {device}: forward {base['fwd'] * 1e3:.1f} ms/img, "
          f"forward+backward {base['fwd_bwd'] * 1e3:.1f} ms/img (peak {fwd_bwd_peak or 0:.0f} MB), "
          f"floor {base['floor'] * 1e3:.1f} ms/img")
    print(f"{'method':<26}{'ms/img':>9}{'x fwd':>8}{'x fwd+bwd':>11}{'x floor':>9}{'peak MB':>9}")
    results = {}
    for method in resolve_many(args.methods):
        options = {"steps": args.steps} if method.startswith("beyond_intuition") else {}

        def call():
            explain(ours, images, method, **options)
        s = seconds(call, device, args.repeats) / per_image
        results[method] = {"s_per_image": s, "ratio_to_fwd": s / base["fwd"],
                           "ratio_to_fwd_bwd": s / base["fwd_bwd"], "ratio_to_floor": s / base["floor"],
                           "peak_mem_mb": peak_mb(call, device)}
        r = results[method]
        print(f"{method:<26}{s * 1e3:>9.1f}{r['ratio_to_fwd']:>8.2f}{r['ratio_to_fwd_bwd']:>11.2f}"
              f"{r['ratio_to_floor']:>9.2f}{r['peak_mem_mb'] or 0:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "batch_size": args.batch_size, "device": str(device),
            "fwd_s_per_image": base["fwd"], "fwd_bwd_s_per_image": base["fwd_bwd"],
            "floor_s_per_image": base["floor"], "fwd_bwd_peak_mem_mb": fwd_bwd_peak, "methods": results},
            indent=2))


if __name__ == "__main__":
    run(main)
