"""ERASER metrics against values computed by hand, and the metrics.py command line."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark import metrics  # noqa: E402
from BERT_rationale_benchmark.metrics import Rationale  # noqa: E402
from BERT_rationale_benchmark.utils import DataError, annotation_from_dict, write_jsonl  # noqa: E402
from baselines.cli import run  # noqa: E402


def spans(ann, *pairs):
    return [Rationale(ann, ann, start, end) for start, end in pairs]


def tokens(rationales):
    return [t for r in rationales for t in r.to_token_level()]


TRUTH = spans("a", (0, 3), (5, 7)) + spans("b", (2, 4))
"""a: tokens {0, 1, 2, 5, 6}; b: {2, 3}."""


def test_token_f1_micro_and_macro():
    pred = spans("a", (1, 4)) + spans("b", (3, 4)) + spans("c", (0, 1))
    scores = metrics.score_hard_rationale_predictions(tokens(TRUTH), tokens(pred))
    # hits: a {1, 2}, b {3}; 5 predicted tokens, 7 true ones
    assert scores["instance_micro"] == pytest.approx({"p": 3 / 5, "r": 3 / 7, "f1": 0.5})
    # a: P 2/3, R 2/5, F1 1/2; b: P 1, R 1/2, F1 2/3; c (no truth): all 0; plain means
    assert scores["instance_macro"] == pytest.approx({"p": 5 / 9, "r": 0.3, "f1": 7 / 18})


def test_duplicate_predictions_count_once():
    pred = spans("a", (1, 4), (1, 2), (2, 3))
    assert (metrics.score_hard_rationale_predictions(tokens(TRUTH), tokens(pred))
            == metrics.score_hard_rationale_predictions(tokens(TRUTH), tokens(spans("a", (1, 4)))))


def test_iou_f1():
    pred = spans("a", (0, 2), (5, 8), (9, 10)) + spans("b", (2, 4))
    # best IoUs: a 2/3, 2/3, 0; b 1
    low, high = metrics.partial_match_score(TRUTH, pred, [0.5, 0.7])
    assert low["micro"] == pytest.approx({"p": 3 / 4, "r": 1.0, "f1": 6 / 7})
    assert low["macro"] == pytest.approx({"p": 5 / 6, "r": 1.0, "f1": 10 / 11})
    assert high["micro"] == pytest.approx({"p": 1 / 4, "r": 1 / 3, "f1": 2 / 7})
    assert high["macro"] == pytest.approx({"p": 0.5, "r": 0.5, "f1": 0.5})


def test_soft_scores():
    # thresholds 0.9, 0.8, 0.3, 0.1 give (R, P) = (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2); trapezoids over recall
    pairs = [([True, False, True, False], [0.9, 0.8, 0.3, 0.1])]
    scores = metrics.score_soft_tokens(pairs)
    assert scores["auprc"] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3 + 1 / 2) / 2)
    assert scores["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert scores["roc_auc_score"] == pytest.approx(3 / 4)
    single_class = metrics.score_soft_tokens(pairs + [([True, True], [0.2, 0.1])])
    assert single_class["average_precision"] == pytest.approx(scores["average_precision"])
    assert single_class["roc_auc_score"] == pytest.approx(scores["roc_auc_score"])


def _annotation(ann_id, label):
    return annotation_from_dict({"annotation_id": ann_id, "classification": label, "evidences": [
        [{"docid": ann_id, "start_token": 0, "end_token": 1, "text": "x"}]]})


def test_comprehensiveness_sufficiency_and_aopc():
    instances = [{"annotation_id": "a", "rationales": [], "classification": "POS",
                  "classification_scores": {"NEG": 0.2, "POS": 0.8},
                  "comprehensiveness_classification_scores": {"NEG": 0.6, "POS": 0.4},
                  "sufficiency_classification_scores": {"NEG": 0.3, "POS": 0.7},
                  "thresholded_scores": [
                      {"threshold": 0.1, "comprehensiveness_classification_scores": {"NEG": 0.5, "POS": 0.5},
                       "sufficiency_classification_scores": {"NEG": 0.4, "POS": 0.6}},
                      {"threshold": 0.5, "comprehensiveness_classification_scores": {"NEG": 0.9, "POS": 0.1},
                       "sufficiency_classification_scores": {"NEG": 0.2, "POS": 0.8}}]},
                 {"annotation_id": "b", "rationales": [], "classification": "POS",
                  "classification_scores": {"NEG": 0.4, "POS": 0.6},
                  "comprehensiveness_classification_scores": {"NEG": 0.4, "POS": 0.6},
                  "sufficiency_classification_scores": {"NEG": 0.5, "POS": 0.5},
                  "thresholded_scores": [
                      {"threshold": 0.1, "comprehensiveness_classification_scores": {"NEG": 0.4, "POS": 0.6},
                       "sufficiency_classification_scores": {"NEG": 0.4, "POS": 0.6}},
                      {"threshold": 0.5, "comprehensiveness_classification_scores": {"NEG": 0.6, "POS": 0.4},
                       "sufficiency_classification_scores": {"NEG": 0.4, "POS": 0.6}}]}]
    annotations = [_annotation("a", "POS"), _annotation("b", "NEG")]
    scores = metrics.score_classifications(instances, annotations, {"a": ["x"], "b": ["x"]}, [0.1, 0.5])
    assert scores["accuracy"] == 0.5
    assert scores["comprehensiveness"] == pytest.approx((0.4 + 0.0) / 2)
    assert scores["sufficiency"] == pytest.approx((0.1 + 0.1) / 2)
    assert scores["comprehensiveness_aopc"] == pytest.approx((0.3 + 0.7 + 0.0 + 0.2) / 4)
    assert scores["comprehensiveness_aopc_points"] == pytest.approx([0.15, 0.45])
    assert scores["sufficiency_aopc"] == pytest.approx((0.2 + 0.0 + 0.0 + 0.0) / 4)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a").write_text("w0 w1 w2\nw3 w4 w5 w6\n")
    (tmp_path / "docs" / "b").write_text("w0 w1 w2 w3 w4\n")
    write_jsonl([{"annotation_id": "a", "query": "q", "classification": "POS", "docids": ["a"], "evidences": [
        [{"docid": "a", "start_token": 0, "end_token": 3, "text": "w0 w1 w2", "start_sentence": 0,
          "end_sentence": 1}], [{"docid": "a", "start_token": 5, "end_token": 7, "text": "w5 w6"}]]},
                 {"annotation_id": "b", "query": "q", "classification": "NEG", "docids": ["b"], "evidences": [
                     [{"docid": "b", "start_token": 2, "end_token": 4, "text": "w2 w3"}]]}], tmp_path / "test.jsonl")
    return tmp_path


def _result(ann_id, hard, soft):
    return {"annotation_id": ann_id, "rationales": [{
        "docid": ann_id, "hard_rationale_predictions": [{"start_token": s, "end_token": e} for s, e in hard],
        "soft_rationale_predictions": soft}]}


def test_command_line_scores(folder, capsys):
    write_jsonl([_result("a", [(1, 4)], [0.1, 0.9, 0.8, 0.7, 0, 0.2, 0.3]),
                 _result("b", [(3, 4)], [0.0, 0.1, 0.9, 0.8, 0.2])], folder / "results.jsonl")
    metrics.main(["--data_dir", str(folder), "--split", "test", "--results", str(folder / "results.jsonl"),
                  "--score_file", str(folder / "scores.json")])
    scores = json.loads((folder / "scores.json").read_text())
    assert json.loads(capsys.readouterr().out) == scores
    # a: P 2/3 R 2/5 F1 1/2; b: P 1 R 1/2 F1 2/3
    assert scores["token_prf"]["instance_macro"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores["token_prf"]["instance_micro"]["p"] == pytest.approx(3 / 4)
    assert scores["token_soft_metrics"]["roc_auc_score"] == pytest.approx((7 / 10 + 1.0) / 2)
    assert scores["iou_scores"][0]["threshold"] == 0.5


@pytest.mark.parametrize("result, message", [
    (_result("a", [(5, 9)], [0.0] * 7), "outside document 'a'"),
    (_result("a", [(1, 3), (2, 4)], [0.0] * 7), "overlapping"),
    (_result("a", [(1, 2)], [0.0] * 3), "3 soft scores for document 'a' of 7 tokens"),
    ({"annotation_id": "a", "rationales": [{"docid": "zzz", "hard_rationale_predictions": []}]},
     "no document for docid 'zzz'"),
    ({"annotation_id": "x", "rationales": [{"docid": "a", "hard_rationale_predictions": []}]}, "wrong --split"),
])
def test_command_line_rejects_bad_results(folder, capsys, result, message):
    write_jsonl([result], folder / "results.jsonl")
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: metrics.main(["--data_dir", str(folder), "--split", "test", "--results",
                                  str(folder / "results.jsonl")]))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and error.count("\n") == 1


def test_missing_data_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match="data folder .* does not exist"):
        metrics.main(["--data_dir", str(tmp_path / "none"), "--split", "test", "--results", __file__])


def test_instances_without_evidence_give_no_nan():
    pairs = [([False, False, False], [0.3, 0.2, 0.1])]
    assert metrics.score_soft_tokens(pairs) == {"auprc": None, "average_precision": None, "roc_auc_score": None}
    with_evidence = [([True, False, True, False], [0.9, 0.8, 0.3, 0.1])]
    assert metrics.score_soft_tokens(pairs + with_evidence) == metrics.score_soft_tokens(with_evidence)


def test_evidence_outside_its_document_or_with_string_offsets_is_refused():
    from BERT_rationale_benchmark.utils import DataError, verify_evidence
    documents = {"a": ["w"] * 5}
    inside = annotation_from_dict({"annotation_id": "a", "classification": "POS", "evidences": [
        [{"docid": "a", "start_token": 3, "end_token": 5, "text": "w"}]]})
    verify_evidence([inside], documents)
    past = annotation_from_dict({"annotation_id": "a", "classification": "POS", "evidences": [
        [{"docid": "a", "start_token": 3, "end_token": 6, "text": "w"}]]})
    with pytest.raises(DataError, match=r"evidence \[3, 6\) is outside document 'a' of 5 tokens"):
        verify_evidence([past], documents)
    with pytest.raises(DataError, match="offsets must be integers"):
        annotation_from_dict({"annotation_id": "a", "classification": "POS", "evidences": [
            [{"docid": "a", "start_token": "3", "end_token": 5, "text": "w"}]]})
