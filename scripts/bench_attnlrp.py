"""Cost of AttnLRP / CP-LRP against the floor and against LXT 2.1 itself, on one random batch, in one run.

Entries, each timed once per round after an untimed warm-up round (rounds interleave the entries, so load changes
hit all of them; the median over rounds is kept):

* ``floor``: our ViT, forward + backward of the target logits to the input, weights frozen;
* ``attnlrp``, ``cp_lrp``, ``cp_lrp+gamma``: our methods (explain(), one batched call);
* ``tv floor``: torchvision's ViT with the same weights, same floor;
* ``lxt cp_lrp``, ``lxt cp_lrp+gamma``: LXT's ViT path (its CP-LRP patches of torchvision's ViT; with Zennit's
  gamma on Conv2d / Linear through LXT's Zennit patch), patched and restored around each timing.

    python scripts/bench_attnlrp.py --model deit_small_patch16_224 --batch-size 8 --device cpu
"""
import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from baselines.cli import add_device_argument, run  # noqa: E402
from baselines.methods import explain  # noqa: E402
from baselines.models import create_model  # noqa: E402
from baselines.relevance.lxt_reference import import_lxt_efficient, lxt_patched, torchvision_vit  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224", help="timm ViT name (random weights)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over all entries; medians kept")
    parser.add_argument("--gamma", type=float, default=0.25,
                        help="gamma of the +gamma entries (linear and conv; 0: no +gamma entries)")
    add_device_argument(parser)
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the figures as JSON")
    return parser.parse_args(argv)


def floor(model, x, target):
    """Forward + backward of the target logits to the input, weights frozen; returns ``x * grad``."""
    x = x.detach().requires_grad_()
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return (x * grad).sum(1)


def entries(model, tv, x, target, gamma):
    from lxt.efficient.models.vit_torch import cp_LRP
    from torchvision.models import vision_transformer
    from zennit.composites import LayerMapComposite
    from zennit.rules import Gamma

    def lxt(with_gamma):
        def call():
            composite = LayerMapComposite([(torch.nn.Conv2d, Gamma(gamma)), (torch.nn.Linear, Gamma(gamma))])
            with lxt_patched(vision_transformer, cp_LRP, zennit=with_gamma), \
                    (composite.context(tv) if with_gamma else nullcontext()):
                return floor(tv, x, target)
        return call

    calls = {
        "floor": lambda: floor(model, x, target),
        "attnlrp": lambda: explain(model, x, "attnlrp", class_index=target),
        "cp_lrp": lambda: explain(model, x, "cp_lrp", class_index=target),
        "cp_lrp+gamma": lambda: explain(model, x, "cp_lrp", class_index=target, gamma=gamma, conv_gamma=gamma),
        "tv floor": lambda: floor(tv, x, target),
        "lxt cp_lrp": lxt(False),
        "lxt cp_lrp+gamma": lxt(True),
    }
    return calls if gamma else {name: call for name, call in calls.items() if "gamma" not in name}


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    device = torch.device(args.device)
    import_lxt_efficient()
    model = create_model(args.model, device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    tv = torchvision_vit(model).to(device)
    for p in tv.parameters():
        p.requires_grad_(False)
    x = torch.randn(args.batch_size, 3, model.img_size, model.img_size, device=device)
    with torch.no_grad():
        target = model(x).argmax(1)
    calls = entries(model, tv, x, target, args.gamma)
    ours_cp, lxt_cp = calls["cp_lrp"]().detach().cpu(), calls["lxt cp_lrp"]().detach().cpu()
    agreement = float((ours_cp - lxt_cp).abs().max() / lxt_cp.abs().max())
    for call in calls.values():  # warm-up round, untimed
        call()
    times = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    per_image = {name: statistics.median(t) / args.batch_size for name, t in times.items()}
    print(f"{args.model}, batch {args.batch_size}, {device}, {args.rounds} interleaved rounds (median); "
          f"cp_lrp vs LXT max relative difference {agreement:.1e}")
    print("| entry | ms / image | x our floor | x torchvision floor |\n|---|---|---|---|")
    for name, value in per_image.items():
        print(f"| {name} | {1000 * value:.1f} | {value / per_image['floor']:.2f} | "
              f"{value / per_image['tv floor']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "batch_size": args.batch_size,
                                               "device": str(device), "rounds": args.rounds,
                                               "seconds_per_image": per_image, "times": times,
                                               "cp_lrp_vs_lxt": agreement}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
