"""Time a method through the hooked adapter against our own ViT copy and the plain timm model, in one run.

Entries run in interleaved rounds (each round times every entry once, in rotating order), so a shared machine's
load falls on all of them alike; the median per entry is kept. Prints seconds per image and the adapter's ratios to
our copy (same weights) and to timm's forward+backward (a training step: weights require grad).

    python scripts/bench_hooked.py --model deit_small_patch16_224 --batch-size 8 --rounds 5
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
import torch  # noqa: E402

from baselines.cli import add_device_argument, run  # noqa: E402
from baselines.methods import explain, resolve  # noqa: E402
from baselines.models import create_model  # noqa: E402
from baselines.models.hooked import hook_model  # noqa: E402
from baselines.models.vit import load_weights  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224", help="timm ViT name (random weights)")
    parser.add_argument("--method", default="generic_attribution", help="method to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds; the median is kept")
    add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    method = resolve(args.method)
    torch.manual_seed(0)
    reference = timm.create_model(args.model).eval().to(device)
    ours = load_weights(create_model(args.model), reference.state_dict()).to(device)
    hooked = hook_model(timm.create_model(args.model).eval()).to(device)
    hooked.model.load_state_dict(reference.state_dict())
    images = torch.randn(args.batch_size, 3, ours.img_size, ours.img_size, device=device)
    target = torch.zeros(args.batch_size, dtype=torch.long, device=device)

    def forward_backward():
        reference.zero_grad(set_to_none=True)
        reference(images).gather(1, target[:, None]).sum().backward()

    entries = {"timm forward+backward": forward_backward,
               f"{method} on our copy": lambda: explain(ours, images, method, class_index=target),
               f"{method} through hooks": lambda: explain(hooked, images, method, class_index=target)}
    times = {name: [] for name in entries}
    names = list(entries)
    for name in names:
        entries[name]()
    for round_index in range(args.rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            entries[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.model}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    for name, value in median.items():
        print(f"  {name:<40} {value / args.batch_size * 1000:8.1f} ms/image")
    hooked_time = median[f"{method} through hooks"]
    print(f"  hooks / our copy: {hooked_time / median[f'{method} on our copy']:.2f}x; "
          f"hooks / timm forward+backward: {hooked_time / median['timm forward+backward']:.2f}x")


if __name__ == "__main__":
    run(main)
