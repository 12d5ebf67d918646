"""scripts/reproduce.py on a reduced mini suite (4 images, 20 reviews, two methods, a tiny BERT): killed midway and
rerun it gives the uninterrupted run's report; its numbers equal the individual scripts'; a changed setting reruns
only the steps it affects; an unreadable record reruns its step and the report says so; bad input is named line by
line before any work."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from BERT_rationale_benchmark import summarize
from BERT_rationale_benchmark.models.pipeline import bert_pipeline
from BERT_rationale_benchmark.tiny_bert import tiny_bert_for
from BERT_rationale_benchmark.utils import load_split
from BERT_rationale_benchmark.words import TOP_K
from baselines.BERT import perturbation_movies
from baselines.ViT import generate_visualizations, imagenet_seg_eval, pertubation_eval_from_hdf5
from scripts import compare_results, make_eraser_data, reproduce

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["attn_last_layer", "rollout"]
REPORT_FILES = ("RESULTS.md", "results.csv", "results.json")


def arguments(output, params):
    return ["--suite", "mini", "--output", str(output), "--methods", *METHODS, "--text-methods", *METHODS,
            "--num-images", "4", "--num-docs", "20", "--batch-size", "2", "--text-batch-size", "4",
            "--bert-params", str(params), "--device", "cpu"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("reproduce")
    vocabulary = root / "vocabulary"
    make_eraser_data.main(["--output", str(vocabulary), "--seed", "0", "--num-docs", "20"])
    params = tiny_bert_for(vocabulary, root / "bert", hidden=16, epochs=1, batch_size=8)
    output = root / "reference"
    assert reproduce.main(arguments(output, params)) == 0
    return {"root": root, "params": params, "output": output}


def report(folder):
    return {name: (Path(folder) / name).read_text() for name in REPORT_FILES}


def ran(folder):
    return set(json.loads((Path(folder) / "run.json").read_text())["steps"])


def test_killed_and_rerun_gives_the_same_report(reference):
    """The fine-tuned classifier is already there (as after a kill past fine-tuning): a second fine-tuning can
    differ from the first in the last bit of a weight (float32 GEMM rounding), which moves the logit curves'
    areas (ABPC) in their sixth digit."""
    output = reference["root"] / "killed"
    shutil.copytree(reference["output"] / "bert" / "classifier", output / "bert" / "classifier")
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "reproduce.py"),
                                *arguments(output, reference["params"])], cwd=ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(list((output / "steps").glob("*.json"))) < 6:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list((output / "steps").glob("*.json")))
    assert 0 < finished and not (output / "RESULTS.md").exists(), "the run was not killed midway"
    assert reproduce.main(arguments(output, reference["params"])) == 0
    total = len(json.loads((reference["output"] / "results.json").read_text()))
    assert len(ran(output)) == total - finished
    assert report(output) == report(reference["output"])


def test_report_equals_the_individual_scripts(reference, tmp_path):
    torch.set_num_threads(1)
    data = reference["output"] / "data"
    numbers = json.loads((reference["output"] / "results.json").read_text())
    common = ["--batch-size", "2", "--num-workers", "0", "--device", "cpu"]
    imagenet_seg_eval.main(["--method", "rollout", "--imagenet-seg-path", str(data / "synthetic" / "gtsegs_ijcv.mat"),
                            "--output", str(tmp_path / "seg")] + common)
    segmentation = json.loads((tmp_path / "seg" / "results.json").read_text())
    assert numbers["segmentation/rollout"]["result"] == {k: segmentation[k] for k in numbers["segmentation/rollout"]
                                                         ["result"]}
    hdf5 = tmp_path / "vis" / "results.hdf5"
    generate_visualizations.main(["--method", "rollout", "--imagenet-validation-path",
                                  str(data / "synthetic" / "imagenet"), "--vis-class", "target", "--output",
                                  str(hdf5)] + common)
    pertubation_eval_from_hdf5.main(["--method", "rollout", "--vis-class", "target", "--neg", "--no-abpc",
                                     "--input", str(hdf5), "--output", str(tmp_path / "pert")] + common)
    perturbation = json.loads((tmp_path / "pert" / "results.json").read_text())
    ours = numbers["perturbation/rollout/target/neg"]["result"]
    assert ours == {k: perturbation[k] for k in ours}
    shutil.copytree(reference["output"] / "bert" / "classifier", tmp_path / "bert" / "classifier")
    text = ["--data_dir", str(data / "eraser_movies"), "--output_dir", str(tmp_path / "bert"), "--model_params",
            str(reference["params"]), "--device", "cpu", "--method", "attn_last_layer"]
    bert_pipeline.main(text + ["--batch-size", "4"])
    f1 = summarize.collect(load_split(str(data / "eraser_movies"), "test"), [tmp_path / "bert" / "attn_last_layer"],
                           TOP_K)["attn_last_layer"]
    assert numbers["eraser/attn_last_layer"]["result"]["token_f1"] == {str(k): v for k, v in f1.items()}
    perturbation_movies.main(text + ["--splits", "test", "--batch-size", "4"])
    movies = json.loads((tmp_path / "bert" / "attn_last_layer" / "perturbation_positive.json").read_text())
    assert numbers["bert-perturbation/attn_last_layer/pos"]["result"] == movies


def test_torchrun_two_processes_give_the_single_process_report(reference, tmp_path, one_thread):
    """The image steps shard their images over two torchrun processes (CPU, gloo); one image per batch makes each
    image's computation the same float32 one, so the report equals the single-process one to the last digit."""
    def argv(name):
        return [*arguments(tmp_path / name, reference["params"]), "--tests", "seg,pert", "--batch-size", "1",
                "--data-root", str(reference["output"] / "data")]
    assert reproduce.main(argv("one")) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    process = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              str(ROOT / "scripts" / "reproduce.py"), *argv("two")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert report(tmp_path / "two") == report(tmp_path / "one")
    assert len(ran(tmp_path / "two")) == len(json.loads((tmp_path / "one" / "results.json").read_text()))


def test_changed_setting_and_unreadable_record_rerun_only_their_steps(reference, tmp_path):
    torch.set_num_threads(1)
    output = tmp_path / "copy"
    shutil.copytree(reference["output"], output)
    argv = arguments(output, reference["params"])
    assert reproduce.main(argv) == 0
    assert ran(output) == set() and report(output) == report(reference["output"])
    (output / "steps" / "segmentation__rollout.json").write_text('{"key": "segmentation/rol')
    argv += ["--perturbation-docs", "1"]
    assert reproduce.main(argv) == 0
    assert ran(output) == {f"bert-perturbation/{m}/{s}" for m in METHODS for s in ("pos", "neg")} | {
        "segmentation/rollout"}
    text = (output / "RESULTS.md").read_text()
    assert "- segmentation/rollout: its earlier result could not be read, so it was run again" in text
    numbers, before = (json.loads((folder / "results.json").read_text()) for folder in (output, reference["output"]))
    assert {k: v for k, v in numbers.items() if not k.startswith("bert-perturbation")} == {
        k: v if k != "segmentation/rollout" else dict(v, note=numbers[k]["note"])
        for k, v in before.items() if not k.startswith("bert-perturbation")}
    assert numbers["bert-perturbation/rollout/pos"]["result"]["documents"] == 1


def test_missing_inputs_named_one_per_line(tmp_path, capsys):
    code = reproduce.main(["--suite", "paper", "--data-root", str(tmp_path), "--output", str(tmp_path / "out"),
                           "--methods", "rollout", "no_such_method", "--text-methods", "magic",
                           "--bert-params", str(tmp_path / "params.json")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not (tmp_path / "out").exists()
    expected = ["unknown method 'no_such_method'", "unknown method 'magic'", "jx_vit_base_p16_224-80ecf9dd.pth",
                "gtsegs_ijcv.mat", "meta.bin", "pert_index.npy", "movies", "params.json"]
    assert len(lines) == len(expected)
    for line, what in zip(lines, expected):
        assert line.startswith("error: ") and what in line


def test_compare_results_counts_the_differing_numbers():
    a = {"seg/x": {"result": {"acc": 0.5, "curve": [1.0, 0.25]}}, "only/a": {"result": {"v": 1}}}
    b = {"seg/x": {"result": {"acc": 0.5, "curve": [1.0, 0.5]}}}
    assert compare_results.compare(a, b) == [("seg", 3, 1, 0.25, "seg/x/curve[1]")]
