"""scripts/collect_results.py: JSONs of several methods -> the papers' tables with the paper's numbers beside."""
import csv
import importlib.util
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "collect_results.py"
spec = importlib.util.spec_from_file_location("collect_results", SCRIPT)
collect = importlib.util.module_from_spec(spec)
spec.loader.exec_module(collect)


def write(path, **data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_tables(tmp_path, capsys):
    seg = dict(benchmark="segmentation", model="synthetic_vit", pixel_accuracy=0.5, mean_ap=0.25, mean_iou=0.125,
               mean_f1=0.1)
    write(tmp_path / "run" / "a" / "results.json", method="transformer_attribution", **seg)
    write(tmp_path / "run" / "b" / "results.json", method="grad_rollout", **seg)
    pert = dict(benchmark="perturbation", model="synthetic_vit", method="rollout", vis_class="top")
    write(tmp_path / "exp" / "neg" / "results.json", neg=True, auc=60.0, auc_ti=61.0, **pert)
    write(tmp_path / "exp" / "pos" / "results.json", neg=False, auc=20.0, auc_ti=20.5, **pert)
    assert collect.main([str(tmp_path / "run"), str(tmp_path / "exp"), "--output", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "segmentation.csv") as handle:
        rows = list(csv.DictReader(handle))
    ours = {row["method"]: row for row in rows}
    assert ours["transformer_attribution"]["pixel acc."] == "50.00"
    assert ours["transformer_attribution"]["pixel acc. (paper)"] == "79.70"
    assert ours["transformer_attribution"]["mIoU (paper)"] == "61.95"
    assert ours["grad_rollout"]["mAP"] == "25.00" and ours["grad_rollout"]["mAP (paper)"] == ""
    with open(tmp_path / "out" / "perturbation.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["AUC negative, predicted"] == "60.00" and row["AUC negative, predicted (paper)"] == "53.10"
    assert row["AUC positive, predicted (TI)"] == "20.50"
    assert "AUC negative, target" not in row
    markdown = (tmp_path / "out" / "perturbation.md").read_text()
    assert markdown.startswith("| model | method |") and "(paper)" in markdown


def test_bad_input(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert collect.main([str(tmp_path / "x.json")]) == 2
    assert collect.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_results_missing_keys_and_an_unwritable_output_are_one_line(tmp_path, capsys):
    write(tmp_path / "run" / "results.json", benchmark="perturbation", model="m", method="rollout", neg=True)
    assert collect.main([str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith("perturbation results without vis_class, auc, auc_ti")

    write(tmp_path / "ok" / "results.json", benchmark="segmentation", model="m", method="rollout",
          pixel_accuracy=0.5, mean_ap=0.5, mean_iou=0.5, mean_f1=0.5)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert collect.main([str(tmp_path / "ok"), "--output", str(blocker / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot write to {blocker / 'out'}") and error.count("\n") == 1
