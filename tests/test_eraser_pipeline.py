"""bert_pipeline.py end to end on a tiny generated data set with a tiny random BERT, and the Movies perturbation
script on its checkpoint."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark import metrics, summarize  # noqa: E402
from BERT_rationale_benchmark.models import model_utils  # noqa: E402
from BERT_rationale_benchmark.models.pipeline import bert_pipeline, training  # noqa: E402
from BERT_rationale_benchmark.tiny_bert import tiny_bert_for  # noqa: E402
from BERT_rationale_benchmark.utils import load_flattened_documents, load_split  # noqa: E402
from BERT_rationale_benchmark.words import TOP_K  # noqa: E402
from baselines.BERT import perturbation_20ng, perturbation_movies  # noqa: E402
from baselines.cli import run  # noqa: E402
from scripts import make_eraser_data  # noqa: E402
from test_bert_methods import FLOAT32_SPREAD  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = root / "movies"
    make_eraser_data.main(["--output", str(data), "--seed", "5", "--num-docs", "30"])
    params = tiny_bert_for(data, root / "bert", hidden=24, epochs=1, batch_size=8)
    bert = params.parent
    out = root / "out"
    bert_pipeline.main(["--data_dir", str(data), "--output_dir", str(out), "--model_params", str(params),
                        "--method", "transformer_attribution", "--device", "cpu"])
    return {"root": root, "data": data, "params": params, "out": out, "bert": bert}


def test_results_files(setup):
    folder = setup["out"] / "transformer_attribution"
    test = load_split(setup["data"], "test")
    documents = load_flattened_documents(setup["data"])
    for k in TOP_K:
        lines = [json.loads(line) for line in (folder / f"identifier_results_{k}.json").read_text().splitlines()]
        assert [line["annotation_id"] for line in lines] == [a.annotation_id for a in test]
        metrics.verify_instances(lines, documents)
        for line in lines:
            rationale = line["rationales"][0]
            soft = rationale["soft_rationale_predictions"]
            assert len(soft) == len(documents[rationale["docid"]]) and min(soft) >= 0
            chosen = sorted(h["start_token"] for h in rationale["hard_rationale_predictions"])
            assert len(chosen) == k and all(h["end_token"] == h["start_token"] + 1
                                            for h in rationale["hard_rationale_predictions"])
            assert min(soft[i] for i in chosen) >= max([s for i, s in enumerate(soft) if i not in chosen] + [0])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["test_documents"] == len(test) and summary["truncated_documents"] == 0
    assert len(list(folder.glob("*_GT_*.tex"))) == len(test) == len(list(folder.glob("*_CF.tex")))
    assert (folder / "heatmaps.html").read_text().count("<h2>") == len(test)


def test_our_model_gives_hf_logits_of_the_checkpoint(setup):
    from transformers import BertForSequenceClassification
    checkpoint = setup["out"] / "classifier" / "classifier.pt"
    params = model_utils.load_params(setup["params"])
    ours = model_utils.load_classifier(params, checkpoint, 2)
    hf = BertForSequenceClassification.from_pretrained(setup["bert"], num_labels=2).eval()
    hf.load_state_dict(torch.load(checkpoint, weights_only=True))
    inputs = model_utils.pad_batch([[2, 10, 11, 12, 3], [2, 13, 3]])
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs), hf(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_batched_explanations_equal_single_ones_and_metrics_run(setup, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(setup["out"] / "classifier", out / "classifier")
    bert_pipeline.main(["--data_dir", str(setup["data"]), "--output_dir", str(out), "--model_params",
                        str(setup["params"]), "--method", "transformer_attribution", "--batch-size", "1",
                        "--device", "cpu"])
    name = "identifier_results_80.json"
    ours = [json.loads(line) for line in (out / "transformer_attribution" / name).read_text().splitlines()]
    batched = [json.loads(line) for line in
               (setup["out"] / "transformer_attribution" / name).read_text().splitlines()]
    for one, many in zip(ours, batched):
        single = one["rationales"][0]["soft_rationale_predictions"]
        tolerance = FLOAT32_SPREAD * max(map(abs, single))
        assert many["rationales"][0]["soft_rationale_predictions"] == pytest.approx(single, abs=tolerance)
    bert_pipeline.main(["--data_dir", str(setup["data"]), "--output_dir", str(out), "--model_params",
                        str(setup["params"]), "--method", "random", "--device", "cpu"])
    score_file = tmp_path / "scores.json"
    metrics.main(["--data_dir", str(setup["data"]), "--split", "test", "--results",
                  str(out / "random" / "identifier_results_20.json"), "--score_file", str(score_file)])
    scores = json.loads(score_file.read_text())
    assert set(scores) == {"iou_scores", "rationale_prf", "token_prf", "token_soft_metrics"}
    summarize.main(["--data_dir", str(setup["data"]), "--results_dirs", str(out / "transformer_attribution"),
                    str(out / "random"), "--output", str(tmp_path / "f1")])
    rows = (tmp_path / "f1.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == [str(k) for k in TOP_K] and rows[2].startswith("random,")
    assert float(rows[2].split(",")[4]) == pytest.approx(scores["token_prf"]["instance_macro"]["f1"], abs=1e-6)
    assert (tmp_path / "f1.png").stat().st_size > 1000 and (tmp_path / "f1.md").is_file()


def test_interrupted_fine_tuning_resumes_to_the_same_weights(setup, tmp_path):
    params = model_utils.load_params(setup["params"])
    params["evidence_classifier"].update(epochs=2, patience=2)
    data = [([2, 10 + i, 11, 3], i % 2) for i in range(8)]

    def stop_in_second_epoch(line):
        if line.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train_classifier(params, data, data[:4], tmp_path / "a", log=stop_in_second_epoch)
    assert (tmp_path / "a" / "last.pt").is_file()
    training.train_classifier(params, data, data[:4], tmp_path / "a", log=lambda line: None)
    training.train_classifier(params, data, data[:4], tmp_path / "b", log=lambda line: None)
    assert not (tmp_path / "a" / "last.pt").exists()
    resumed = torch.load(tmp_path / "a" / "classifier.pt", weights_only=True)
    straight = torch.load(tmp_path / "b" / "classifier.pt", weights_only=True)
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value)


def _fails(argv, main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: main(argv))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1
    return error


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    params = json.loads(setup["params"].read_text())
    params["evidence_classifier"]["classes"] = ["NEG", "POS", "MIXED"]
    (tmp_path / "three.json").write_text(json.dumps(params))
    common = ["--data_dir", str(setup["data"]), "--output_dir", str(setup["out"])]
    error = _fails(common + ["--model_params", str(tmp_path / "three.json")], bert_pipeline.main, capsys)
    assert "is for 2 labels, the params/data give 3" in error
    del params["max_length"]
    (tmp_path / "missing.json").write_text(json.dumps(params))
    error = _fails(common + ["--model_params", str(tmp_path / "missing.json")], bert_pipeline.main, capsys)
    assert "missing key 'max_length'" in error
    error = _fails(["--data_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path),
                    "--model_params", str(setup["params"])], bert_pipeline.main, capsys)
    assert "does not exist" in error
    with pytest.raises(SystemExit) as exit_info:
        bert_pipeline.parse_args(common + ["--model_params", str(setup["params"]), "--class-index", "1"])
    assert exit_info.value.code == 2 and "ground-truth class" in capsys.readouterr().err


def test_movies_perturbation(setup):
    perturbation_movies.main(["--data_dir", str(setup["data"]), "--output_dir", str(setup["out"]),
                              "--model_params", str(setup["params"]), "--limit", "6", "--batch-size", "3",
                              "--device", "cpu"])
    result = json.loads((setup["out"] / "transformer_attribution" / "perturbation_positive.json").read_text())
    assert result["documents"] == 6 and len(result["accuracy"]) == 9
    assert all(0 <= a <= 100 for a in result["accuracy"])


def test_20ng_perturbation_from_an_export(setup, tmp_path):
    documents = load_flattened_documents(setup["data"])
    records = [{"text": " ".join(words[:40]), "label": i % 2} for i, words in enumerate(documents.values())]
    (tmp_path / "news.json").write_text(json.dumps(records))
    perturbation_20ng.main(["--data", str(tmp_path / "news.json"), "--model_params", str(setup["params"]),
                            "--checkpoint", str(setup["out"] / "classifier" / "classifier.pt"), "--num-labels", "2",
                            "--num-samples", "5", "--max-length", "32", "--output", str(tmp_path / "r.json"),
                            "--device", "cpu"])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["documents"] == 5 and len(result["accuracy"]) == 11
    assert result["accuracy"][0] == result["clean_accuracy"]


ABPC_FIELDS = ("abpc_logit", "abpc_prob", "morf_logit", "lerf_logit", "morf_prob", "lerf_prob")


def assert_same_perturbation_result(ours, hooked, all_removed_last=False):
    """Accuracies equal; the logit curves and their ABPC come from two float32 implementations of the same BERT
    (ours and transformers'), which agree to 1e-5 relative on the logits, so compare those within 1e-4.
    ``all_removed_last``: the last step removes every position (20NG's f = 1), an input of padding only, on which
    the two implementations' logits are not defined alike (they differed by 2e-4 here): that point is left out of
    the curves, and the areas are compared to 1e-4 absolute (the step's trapezoid share is 0.05 x its gap)."""
    assert {k: v for k, v in ours.items() if k not in ABPC_FIELDS} == {
        k: v for k, v in hooked.items() if k not in ABPC_FIELDS}
    for field in ABPC_FIELDS:
        a, b = ours[field], hooked[field]
        if all_removed_last and isinstance(a, list):
            a, b = a[:-1], b[:-1]
        close = pytest.approx(b, abs=1e-4) if all_removed_last and not isinstance(a, list) else pytest.approx(
            b, rel=1e-4, abs=1e-6)
        assert a == close, field


@pytest.mark.numerics
def test_perturbations_through_hooks_equal_our_copy(setup, tmp_path):
    """``--model hf:FOLDER`` (the fine-tuned classifier saved as a Hugging Face folder, explained through hooks)
    gives the accuracies of our BERT copy with the same checkpoint, in both perturbation scripts, and the same
    rationales in the ERASER pipeline."""
    from transformers import AutoTokenizer, BertForSequenceClassification
    checkpoint = setup["out"] / "classifier" / "classifier.pt"
    hf = BertForSequenceClassification.from_pretrained(setup["bert"], num_labels=2)
    hf.load_state_dict(torch.load(checkpoint, weights_only=True))
    hf.save_pretrained(tmp_path / "hf")
    AutoTokenizer.from_pretrained(setup["bert"]).save_pretrained(tmp_path / "hf")
    hooked = ["--model", f"hf:{tmp_path / 'hf'}"]
    common = ["--model_params", str(setup["params"]), "--method", "generic_attribution", "--device", "cpu"]
    movies = [*common, "--data_dir", str(setup["data"]), "--limit", "6", "--batch-size", "3"]
    for name, source in (("ours", ["--checkpoint", str(checkpoint)]), ("hooked", hooked)):
        perturbation_movies.main([*movies, "--output_dir", str(tmp_path / name), *source])
    results = [json.loads((tmp_path / name / "generic_attribution" / "perturbation_positive.json").read_text())
               for name in ("ours", "hooked")]
    assert_same_perturbation_result(*results)
    assert results[0]["documents"] == 6
    documents = load_flattened_documents(setup["data"])
    records = [{"text": " ".join(words[:40]), "label": i % 2} for i, words in enumerate(documents.values())]
    (tmp_path / "news.json").write_text(json.dumps(records))
    news = [*common, "--data", str(tmp_path / "news.json"), "--num-labels", "2", "--num-samples", "5",
            "--max-length", "32"]
    for name, source in (("ours", ["--checkpoint", str(checkpoint)]), ("hooked", hooked)):
        perturbation_20ng.main([*news, "--output", str(tmp_path / f"{name}.json"), *source])
    news_results = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ours", "hooked")]
    assert_same_perturbation_result(*news_results, all_removed_last=True)
    for name, source in (("ours", []), ("hooked", hooked)):
        shutil.copytree(setup["out"] / "classifier", tmp_path / f"{name}_rationales" / "classifier")
        bert_pipeline.main(["--data_dir", str(setup["data"]), "--output_dir", str(tmp_path / f"{name}_rationales"),
                            *common, *source])
    for k in TOP_K:
        ours, through_hooks = ([json.loads(line)["rationales"][0] for line in (
            tmp_path / f"{name}_rationales" / "generic_attribution" / f"identifier_results_{k}.json").read_text()
            .splitlines()] for name in ("ours", "hooked"))
        for a, b in zip(ours, through_hooks, strict=True):
            assert a["hard_rationale_predictions"] == b["hard_rationale_predictions"]
            soft = np.array([a["soft_rationale_predictions"], b["soft_rationale_predictions"]])
            assert np.abs(soft[0] - soft[1]).max() <= 1e-5 * np.abs(soft[0]).max()  # float32, sdpa vs ours


def test_results_are_written_as_one_set(tmp_path):
    """A failure while writing a new set leaves the earlier set's files as they were and no summary (the mark
    of a complete set); a complete write replaces every file, the summary last."""
    old = {f"identifier_results_{k}.json": f"old {k}\n" for k in (5, 10)}
    bert_pipeline.write_set(tmp_path, {**old, "summary.json": "{}\n"})
    with pytest.raises(TypeError):
        bert_pipeline.write_set(tmp_path, {"identifier_results_5.json": "new 5\n",
                                           "identifier_results_10.json": None, "summary.json": "{}\n"})
    assert (tmp_path / "identifier_results_5.json").read_text() == "old 5\n"
    assert not (tmp_path / "summary.json").exists()
    bert_pipeline.write_set(tmp_path, {"identifier_results_5.json": "new 5\n",
                                       "identifier_results_10.json": "new 10\n", "summary.json": "{}\n"})
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")) == [
        "identifier_results_10.json", "identifier_results_5.json", "summary.json"]
    assert (tmp_path / "identifier_results_10.json").read_text() == "new 10\n"
