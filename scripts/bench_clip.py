"""Speed of the CLIP explanations against the floor: open_clip's forward + backward on the same pairs.

Per round, in a shuffled order: (floor) open_clip ViT-B-32 encodes a batch of images and texts and back-propagates
the summed pair similarities to the images; (method) our copy encodes the texts and explains each image for its own
text (``explain`` on ``CLIP.image_side``), which includes its own forward and backward. Random weights (the speed
does not depend on them). Prints the median seconds per (image, text) pair and the ratio of the medians; timings on
a shared machine move with the load, so only ratios of the same run mean anything.
"""
import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baselines.cli import add_device_argument  # noqa: E402
from baselines.methods import explain  # noqa: E402
from baselines.models.clip import clip_from_state, open_clip_config, openai_layout  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    parser.add_argument("--batch-size", type=int, default=8, help="(image, text) pairs per batch (default 8)")
    parser.add_argument("--methods", nargs="+", default=["generic_attribution", "transformer_attribution"])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    add_device_argument(parser, default="cpu")
    parser.add_argument("--json", default=None, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import open_clip
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = open_clip.create_model(args.arch).eval().to(args.device)
    ours = clip_from_state(openai_layout(reference.state_dict()), open_clip_config(args.arch)).to(args.device)
    for p in reference.parameters():
        p.requires_grad_(False)
    size = ours.img_size
    images = torch.randn(args.batch_size, 3, size, size, device=args.device)
    ids = ours.tokenizer([f"a photo of object number {i}" for i in range(args.batch_size)]).ids.to(args.device)
    targets = torch.arange(args.batch_size, device=args.device)

    def floor():
        x = images.clone().requires_grad_()
        image, text, scale = reference(x, ids)[:3]
        (scale * (image * text).sum(-1)).sum().backward()

    def method(name):
        def run():
            with torch.no_grad():
                texts = ours.encode_text(ids)
            explain(ours.image_side(texts), images, name, class_index=targets)
        return run

    entries = {"floor": floor, **{name: method(name) for name in args.methods}}
    for fn in entries.values():
        fn()
    times = {name: [] for name in entries}
    order = list(entries)
    for _ in range(args.rounds):
        random.shuffle(order)
        for name in order:
            began = time.perf_counter()
            entries[name]()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - began)
    medians = {name: statistics.median(t) / args.batch_size for name, t in times.items()}
    result = {"arch": args.arch, "batch_size": args.batch_size, "threads": args.threads, "rounds": args.rounds,
              "seconds_per_pair": medians, "ratio_to_floor": {n: medians[n] / medians["floor"] for n in args.methods}}
    for name, seconds in medians.items():
        ratio = "" if name == "floor" else f"  {seconds / medians['floor']:.2f}x the floor"
        print(f"{name:<24} {seconds * 1000:8.1f} ms per pair{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
