"""Token-F1 against k for several methods' result folders: a markdown table, a CSV file and a PNG plot.

Each folder is one method's output of bert_pipeline.py (OUTPUT/<method>/identifier_results_{k}.json); the label is
the folder name. The score is metrics.py's token-level F1 (``token_prf``), instance-macro by default (TE's
"token-F1"), or instance-micro with --average micro.
"""
import argparse
import csv
import sys
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from BERT_rationale_benchmark.metrics import (predicted_rationales, score_hard_rationale_predictions,  # noqa: E402
                                              truth_rationales)
from BERT_rationale_benchmark.utils import DataError, load_jsonl, load_split  # noqa: E402
from BERT_rationale_benchmark.words import TOP_K  # noqa: E402
from baselines.cli import run  # noqa: E402


def token_f1(truth_tokens, instances, average):
    pred = list(chain.from_iterable(r.to_token_level() for r in predicted_rationales(instances)))
    return score_hard_rationale_predictions(truth_tokens, pred)[f"instance_{average}"]["f1"]


def collect(annotations, folders, ks, average="macro"):
    """``{label: {k: token F1}}`` for every folder; a missing result file is a ``DataError``."""
    truth = list(chain.from_iterable(r.to_token_level() for r in truth_rationales(annotations)))
    table = {}
    for folder in folders:
        row = {}
        for k in ks:
            path = Path(folder) / f"identifier_results_{k}.json"
            if not path.is_file():
                raise DataError(f"{path} does not exist (run bert_pipeline.py for this method first)")
            row[k] = token_f1(truth, load_jsonl(path), average)
        table[Path(folder).name] = row
    return table


def write_table(table, ks, stem):
    """``stem.md`` and ``stem.csv``: one row per method, one column per k."""
    header = ["method"] + [f"k={k}" for k in ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name] + [f"{row[k]:.4f}" for k in ks]) + " |" for name, row in table.items()]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    with open(f"{stem}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method"] + list(ks))
        writer.writerows([name] + [f"{row[k]:.6f}" for k in ks] for name, row in table.items())
    return "\n".join(lines)


def plot(table, ks, path, average):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, row in table.items():
        axis.plot(ks, [row[k] for k in ks], marker="o", label=name)
    axis.set_xlabel("k (top-k words)")
    axis.set_ylabel(f"token F1 (instance {average})")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="ERASER folder with the annotations")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="default test")
    parser.add_argument("--results_dirs", nargs="+", required=True, help="one OUTPUT/<method> folder per method")
    parser.add_argument("--output", required=True,
                        help="path stem: writes STEM.md, STEM.csv and STEM.png")
    parser.add_argument("--ks", nargs="+", type=int, default=list(TOP_K), help="k values (default 5 10 ... 80)")
    parser.add_argument("--average", choices=["macro", "micro"], default="macro",
                        help="instance-macro (TE's token-F1, default) or instance-micro F1")
    args = parser.parse_args(argv)
    table = collect(load_split(args.data_dir, args.split), args.results_dirs, args.ks, args.average)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    print(write_table(table, args.ks, args.output))
    plot(table, args.ks, f"{args.output}.png", args.average)
    print(f"wrote {args.output}.md, {args.output}.csv, {args.output}.png")


if __name__ == "__main__":
    run(main)
