"""Wall time of scripts/reproduce.py against the sum of the individual scripts' times for the same work.

    python scripts/bench_reproduce.py [--methods attn_last_layer rollout] [--num-images 16] [--output DIR]

Runs, each as its own process as a user would: make_synthetic_data.py, then per method imagenet_seg_eval.py,
generate_visualizations.py (predicted and target class) and pertubation_eval_from_hdf5.py (positive and negative
of each; negative with --no-abpc, as reproduce.py runs it); then reproduce.py --suite mini --tests seg,pert on the
same settings into a fresh folder. Prints both wall times and their ratio (the issue asks for at most 1.3).
"""
import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command):
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["attn_last_layer", "rollout"])
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--output", type=Path, default=Path("outputs/bench_reproduce"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.output, ignore_errors=True)
    data, runs = args.output / "scripts" / "data", args.output / "scripts" / "runs"
    common = ["--batch-size", "16", "--num-workers", "0", "--device", "cpu"]
    scripts = timed(["scripts/make_synthetic_data.py", "--output", str(data), "--num-train", "0", "--num-val",
                     str(args.num_images)])
    for method in args.methods:
        scripts += timed(["baselines/ViT/imagenet_seg_eval.py", "--method", method, "--imagenet-seg-path",
                          str(data / "gtsegs_ijcv.mat"), "--output", str(runs / "seg" / method)] + common)
        for vis_class in ("top", "target"):
            hdf5 = runs / "vis" / method / vis_class / "results.hdf5"
            scripts += timed(["baselines/ViT/generate_visualizations.py", "--method", method,
                              "--imagenet-validation-path", str(data / "imagenet"), "--vis-class", vis_class,
                              "--output", str(hdf5)] + common)
            for neg in ([], ["--neg", "--no-abpc"]):
                scripts += timed(["baselines/ViT/pertubation_eval_from_hdf5.py", "--method", method, "--vis-class",
                                  vis_class, "--input", str(hdf5), "--output",
                                  str(runs / "pert" / method / vis_class / str(bool(neg)))] + neg + common)
    suite = timed(["scripts/reproduce.py", "--suite", "mini", "--tests", "seg,pert", "--methods", *args.methods,
                   "--num-images", str(args.num_images), "--device", "cpu", "--output", str(args.output / "suite")])
    print(f"individual scripts: {scripts:.1f} s; reproduce.py: {suite:.1f} s; ratio {suite / scripts:.2f}")


if __name__ == "__main__":
    main()
