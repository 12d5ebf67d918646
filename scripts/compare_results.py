"""Compare two reproduce.py results.json files (e.g. the mini suite on CUDA against the CPU run): per test, how many
numbers differ and by how much, and the steps only one side has.

    python scripts/compare_results.py CPU/results.json GPU/results.json [--run-a CPU/run.json --run-b GPU/run.json]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baselines.cli import UserError, run  # noqa: E402


def numbers(value, prefix=""):
    """Every number inside a JSON value, by its path."""
    if isinstance(value, bool):
        return {prefix: float(value)}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{prefix}[{i}]").items()}
    return {}


def read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON file ({error})") from None


def compare(a, b):
    """Rows (test, numbers compared, numbers that differ, largest absolute difference, where)."""
    by_test = {}
    for key in sorted(set(a) & set(b)):
        left, right = numbers(a[key]["result"]), numbers(b[key]["result"])
        test = key.split("/")[0]
        row = by_test.setdefault(test, [0, 0, 0.0, ""])
        for path in sorted(set(left) & set(right)):
            difference = abs(left[path] - right[path])
            row[0] += 1
            row[1] += difference > 0
            if difference > row[2]:
                row[2], row[3] = difference, key + path
    return [(test, *row) for test, row in by_test.items()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="results.json of the first run (e.g. CPU)")
    parser.add_argument("b", help="results.json of the second run (e.g. CUDA)")
    parser.add_argument("--run-a", help="run.json of the first run (timings)")
    parser.add_argument("--run-b", help="run.json of the second run (timings)")
    args = parser.parse_args(argv)
    a, b = read(args.a), read(args.b)
    print("| test | numbers | differing | largest difference | where |\n|---|---|---|---|---|")
    for test, count, differing, largest, where in compare(a, b):
        print(f"| {test} | {count} | {differing} | {largest:.3g} | {where} |")
    for name, only in (("first", set(a) - set(b)), ("second", set(b) - set(a))):
        if only:
            print(f"steps only in the {name} run: {', '.join(sorted(only))}")
    if args.run_a and args.run_b:
        ta, tb = read(args.run_a)["total"], read(args.run_b)["total"]
        print(f"wall time: {ta['wall_s']} s vs {tb['wall_s']} s (ratio {ta['wall_s'] / tb['wall_s']:.1f}x)")


if __name__ == "__main__":
    run(main)
