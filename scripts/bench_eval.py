"""Cost of the ViT benchmark scripts against the work they cannot avoid, measured in one process.

    python scripts/bench_eval.py --data DIR [--method transformer_attribution] [--limit 64] [--batch-size 16]

DIR is a make_synthetic_data.py folder (DIR/imagenet). Reported (best of --repeats runs each):
  generate_visualizations.py  vs  the method alone (explain + pixel_maps on images already in memory)
  pertubation_eval_from_hdf5.py  vs  its forwards alone (1 clean + 9 perturbed per image, already on the device)
The targets are at most 1.15x and 1.3x.
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from baselines.eval import cli  # noqa: E402
from baselines.eval.metrics import perturb  # noqa: E402
from baselines.methods import METHODS, explain, pixel_maps  # noqa: E402


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "baselines" / "ViT" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(function, device, repeats, clock=time.perf_counter):
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, clock() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--method", default="transformer_attribution")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="process: CPU seconds of this process (robust on a shared CPU; use with "
                             "--num-workers 0 and --threads 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip-perturbation", action="store_true", help="time generate_visualizations.py only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    device = torch.device(args.device)
    model = cli.load_model(args.model, None, device)
    generate, perturbation = script("generate_visualizations"), script("pertubation_eval_from_hdf5")
    dataset = generate.validation_set(str(args.data / "imagenet"), model.img_size)
    rows = [range(s, min(s + args.batch_size, args.limit)) for s in range(0, args.limit, args.batch_size)]
    batches = [cli.to_unit(torch.stack([dataset[i][0] for i in batch]), device) for batch in rows]
    pixel_level = METHODS[generate.resolve(args.method)].pixel_level

    def method_alone():
        for images in batches:
            raw = explain(model, cli.normalise(images, model), args.method)
            pixel_maps(raw.detach(), model.patch_size, pixel_level=pixel_level).cpu()

    common = ["--method", args.method, "--limit", str(args.limit), "--batch-size", str(args.batch_size),
              "--num-workers", str(args.num_workers), "--device", args.device]
    if args.model:
        common += ["--model", args.model]
    with tempfile.TemporaryDirectory() as folder:
        hdf5 = os.path.join(folder, "results.hdf5")
        generate_args = [*common, "--imagenet-validation-path", str(args.data / "imagenet"), "--output", hdf5,
                         "--overwrite"]
        method_alone()
        method_time = timed(method_alone, device, args.repeats, clock)
        generate_time = timed(lambda: generate.main(generate_args), device, args.repeats, clock)
        print(f"\n{args.limit} images, batch {args.batch_size}, {args.method}, device {device}, {args.clock} clock")
        print(f"generate_visualizations.py {generate_time:.2f} s, method alone {method_time:.2f} s: "
              f"{generate_time / method_time:.3f}x (target <= 1.15x)")
        if args.skip_perturbation:
            return

        steps_batches = [torch.cat([images[None], perturb(images, torch.rand_like(images[:, :1]))]).flatten(0, 1)
                         for images in batches]

        def forwards_alone():
            with torch.inference_mode():
                for images in steps_batches:
                    model(cli.normalise(images, model)).cpu()

        perturbation_args = [*common, "--input", hdf5, "--output", os.path.join(folder, "pert")]
        forwards_alone()
        forward_time = timed(forwards_alone, device, args.repeats, clock)
        perturbation_time = timed(lambda: perturbation.main(perturbation_args), device, args.repeats, clock)
    print(f"pertubation_eval_from_hdf5.py {perturbation_time:.2f} s, forwards alone {forward_time:.2f} s: "
          f"{perturbation_time / forward_time:.3f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
