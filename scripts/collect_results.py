"""Turn the results.json files of the ViT benchmarks into the papers' tables (markdown and CSV).

    python scripts/collect_results.py run/ experiments/ [--output DIR]

Arguments are JSON files or folders searched for results.json. Table 1 (segmentation): pixel accuracy, mAP, mIoU
(and mF1) per method; Table 2 (perturbation): AUC per method for negative/positive perturbation of the
predicted (top) or target class. All numbers in percent. Beside ours, a "(paper)" column gives the values
reported by Chefer et al., CVPR 2021 (ViT-B/16 on ImageNet; originals.md 1.8) where the paper has them: they
are the paper's numbers, not ours, and not comparable with other models or data sets.
Without --output the markdown tables are printed; with it, DIR/{segmentation,perturbation}.{md,csv} are written.
"""
import argparse
import csv
import io
import json
import os
import sys

PAPER_SEGMENTATION = {  # method: (pixel accuracy, mAP, mIoU), CVPR 2021 Table 1
    "rollout": (73.54, 84.76, 55.42), "attn_last_layer": (67.87, 80.24, 46.37),
    "attn_gradcam": (64.44, 71.60, 40.82), "full_lrp": (51.09, 55.68, 32.89),
    "lrp_last_layer": (76.31, 84.67, 57.94), "transformer_attribution": (79.70, 86.03, 61.95),
}
PAPER_PERTURBATION = {  # method: {(neg, vis_class): AUC}, CVPR 2021 Table 2
    "rollout": {(True, "top"): 53.10, (True, "target"): 53.10, (False, "top"): 20.05, (False, "target"): 20.05},
    "attn_last_layer": {(True, "top"): 45.55, (True, "target"): 45.55, (False, "top"): 23.99,
                        (False, "target"): 23.99},
    "attn_gradcam": {(True, "top"): 41.52, (True, "target"): 42.02, (False, "top"): 34.06,
                     (False, "target"): 33.56},
    "full_lrp": {(True, "top"): 43.49, (True, "target"): 43.49, (False, "top"): 41.94, (False, "target"): 41.94},
    "lrp_last_layer": {(True, "top"): 50.49, (True, "target"): 50.49, (False, "top"): 19.64,
                       (False, "target"): 19.64},
    "transformer_attribution": {(True, "top"): 54.16, (True, "target"): 55.04, (False, "top"): 17.03,
                                (False, "target"): 16.04},
}
SEGMENTATION_COLUMNS = (("pixel acc.", "pixel_accuracy", 0), ("mAP", "mean_ap", 1), ("mIoU", "mean_iou", 2),
                        ("mF1", "mean_f1", None))
PAPER_ORDER = ("rollout", "attn_last_layer", "attn_gradcam", "full_lrp", "lrp_last_layer", "transformer_attribution")
PERTURBATION_COLUMNS = ((True, "top", "negative, predicted"), (True, "target", "negative, target"),
                        (False, "top", "positive, predicted"), (False, "target", "positive, target"))
REQUIRED_KEYS = {"segmentation": ("model", "method") + tuple(key for _, key, _ in SEGMENTATION_COLUMNS),
                 "perturbation": ("model", "method", "neg", "vis_class", "auc", "auc_ti")}
"""What each kind of results.json must hold for its table."""


class CollectError(Exception):
    """An input that is not a benchmark result."""


def find(paths):
    """The JSON files named or found (results.json) under the given paths."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(root, "results.json") for root, _, names in os.walk(path)
                            if "results.json" in names)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise CollectError(f"{path}: no such file or folder")
    return files


def load(files):
    """Benchmark results by kind; a later file (by modification time) replaces an earlier one of the same row."""
    results = {"segmentation": {}, "perturbation": {}}
    for path in sorted(files, key=os.path.getmtime):
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError) as error:
            raise CollectError(f"{path}: not a readable JSON file ({error})") from None
        kind = data.get("benchmark") if isinstance(data, dict) else None
        if kind not in results:
            raise CollectError(f"{path}: not a results.json of imagenet_seg_eval.py or pertubation_eval_from_hdf5.py")
        missing = [key for key in REQUIRED_KEYS[kind] if key not in data]
        if missing:
            raise CollectError(f"{path}: {kind} results without {', '.join(missing)}")
        key = (data["model"], data["method"])
        if kind == "perturbation":
            results[kind].setdefault(key, {})[(bool(data["neg"]), data["vis_class"])] = data
        else:
            results[kind][key] = data
    return results


def row_order(key):
    """The paper's column order of methods first, then the others by name; grouped by model."""
    model, method = key
    return model, PAPER_ORDER.index(method) if method in PAPER_ORDER else len(PAPER_ORDER), method


def number(value):
    return "" if value is None else f"{value:.2f}"


def segmentation_table(rows):
    header = ["model", "method"]
    for label, _, paper in SEGMENTATION_COLUMNS:
        header += [label] + ([f"{label} (paper)"] if paper is not None else [])
    body = []
    for (model, method), data in sorted(rows.items(), key=lambda item: row_order(item[0])):
        line = [model, method]
        for _, key, paper in SEGMENTATION_COLUMNS:
            line.append(number(100 * data[key]))
            if paper is not None:
                reported = PAPER_SEGMENTATION.get(method)
                line.append(number(reported[paper] if reported else None))
        body.append(line)
    return header, body


def perturbation_table(rows):
    present = [column for column in PERTURBATION_COLUMNS
               if any((column[0], column[1]) in runs for runs in rows.values())]
    header = ["model", "method"]
    for _, _, label in present:
        header += [f"AUC {label}", f"AUC {label} (paper)", f"AUC {label} (TI)"]
    body = []
    for (model, method), runs in sorted(rows.items(), key=lambda item: row_order(item[0])):
        line = [model, method]
        for neg, vis_class, _ in present:
            run = runs.get((neg, vis_class))
            line += [number(run and run["auc"]), number(PAPER_PERTURBATION.get(method, {}).get((neg, vis_class))),
                     number(run and run["auc_ti"])]
        body.append(line)
    return header, body


def markdown(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in body]) + "\n"


def csv_text(header, body):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *body])
    return buffer.getvalue()


def write_table(folder, name, md, csv):
    """``folder/name.md`` and ``.csv``, each written whole (temporary file, then renamed)."""
    os.makedirs(folder, exist_ok=True)
    for extension, text in (("md", md), ("csv", csv)):
        path = os.path.join(folder, f"{name}.{extension}")
        with open(path + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="results.json files or folders holding them")
    parser.add_argument("--output", default=None, help="folder for segmentation/perturbation .md and .csv")
    args = parser.parse_args(argv)
    try:
        results = load(find(args.paths))
    except CollectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tables = {"segmentation": segmentation_table(results["segmentation"]),
              "perturbation": perturbation_table(results["perturbation"])}
    note = "\n(paper): Chefer et al., CVPR 2021, ViT-B/16 on ImageNet, as reported; all numbers in %.\n"
    for name, (header, body) in tables.items():
        if not body:
            continue
        if args.output is None:
            print(f"## {name}\n\n{markdown(header, body)}{note}")
            continue
        try:
            write_table(args.output, name, markdown(header, body) + note, csv_text(header, body))
        except OSError as error:
            print(f"error: cannot write to {args.output}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"wrote {args.output}/{name}.md and .csv ({len(body)} rows)")
    if not any(body for _, body in tables.values()):
        print("error: no results found", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
