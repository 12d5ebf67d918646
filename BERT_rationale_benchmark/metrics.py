"""Score rationale predictions against ERASER annotations (our code; the definitions of ERASER's metrics.py).

Definitions followed (jayded/eraserbenchmark ``rationale_benchmark/metrics.py``, as TE ships it):
- Hard predictions and annotations become sets of ``Rationale(annotation_id, docid, start, end)``.
  ``rationale_prf``: exact span matches; ``token_prf``: the same on single tokens (``to_token_level``).
  ``instance_micro``: P = |T & P| / |P|, R = |T & P| / |T| over all instances pooled, F1 of those.
  ``instance_macro``: per (annotation_id, docid) present in the truth or the predictions, P, R and F1 (0 when P or
  R is 0); P, R and F1 are each the plain mean over instances ("as sklearn would").
  TE's "token-F1" is ``token_prf.instance_macro.f1``.
- ``iou_scores`` (partial match): each predicted span's best IoU over the truth spans of its instance; a true
  positive when IoU >= threshold. Micro: TP / #truth spans, TP / #predicted spans, F1 of those. Macro: recall
  averaged over instances with truth, precision over instances with predictions, F1 of the two averages.
- ``token_soft_metrics`` (with ``soft_rationale_predictions``, one score per token): ``auprc`` = mean over
  instances with at least one evidence token of ``auc(recall, precision)`` from sklearn's
  ``precision_recall_curve``; ``average_precision`` and ``roc_auc_score`` = means of sklearn's scores over the
  instances whose truth has both classes. Instances without evidence have nothing to find and are left out (ERASER's
  code gives them NaN); a metric that no instance can score is ``null``, never NaN.
- ``classification_scores`` (with ``classification`` / ``classification_scores``): accuracy, sklearn's
  classification report; comprehensiveness / sufficiency = mean of p(predicted class) minus that class's
  probability with the rationale removed / only the rationale kept; the entropy differences and
  KL(rationale-based || full) variants; AOPC = mean over instances and ``--aopc_thresholds`` of the same
  differences in ``thresholded_scores``; ``tokens_to_flip`` as a fraction of the document length.
"""
import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from scipy.stats import entropy
from sklearn.metrics import (accuracy_score, auc, average_precision_score, classification_report,
                             precision_recall_curve, roc_auc_score)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from BERT_rationale_benchmark.utils import (DataError, load_flattened_documents, load_jsonl, load_split,  # noqa: E402
                                            verify_evidence)
from baselines.cli import run  # noqa: E402


@dataclass(frozen=True)
class Rationale:
    ann_id: str
    docid: str
    start_token: int
    end_token: int

    def to_token_level(self):
        return [Rationale(self.ann_id, self.docid, t, t + 1) for t in range(self.start_token, self.end_token)]


def truth_rationales(annotations):
    return [Rationale(a.annotation_id, e.docid, e.start_token, e.end_token)
            for a in annotations for e in a.all_evidences()]


def predicted_rationales(instances):
    return [Rationale(str(inst["annotation_id"]), r["docid"], p["start_token"], p["end_token"])
            for inst in instances for r in inst["rationales"] for p in r.get("hard_rationale_predictions") or []]


def _f1(precision, recall):
    return 0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall)


def _by_instance(rationales):
    keyed = defaultdict(set)
    for r in rationales:
        keyed[(r.ann_id, r.docid)].add(r)
    return keyed


def _prf(p, r):
    return {"p": p, "r": r, "f1": _f1(p, r)}


def score_hard_rationale_predictions(truth, pred):
    """Instance-micro and instance-macro P/R/F1 of exact matches (see the module docstring)."""
    truth, pred = set(truth), set(pred)
    hits = len(truth & pred)
    scores = {"instance_micro": _prf(hits / len(pred) if pred else 0.0, hits / len(truth) if truth else 0.0)}
    truth_by, pred_by = _by_instance(truth), _by_instance(pred)
    instances = []
    for key in set(truth_by) | set(pred_by):
        t, p = truth_by.get(key, set()), pred_by.get(key, set())
        instances.append(_prf(len(t & p) / len(p) if p else 0.0, len(t & p) / len(t) if t else 0.0))
    mean = {k: sum(i[k] for i in instances) / len(instances) if instances else 0.0 for k in ("p", "r", "f1")}
    scores["instance_macro"] = mean
    return scores


def _iou(a, b):
    first, second = set(range(a.start_token, a.end_token)), set(range(b.start_token, b.end_token))
    union = len(first | second)
    return len(first & second) / union if union else 0.0


def partial_match_score(truth, pred, thresholds):
    """IOU F1 for each threshold (see the module docstring)."""
    truth_by, pred_by = _by_instance(truth), _by_instance(pred)
    best = {key: [max((_iou(p, t) for t in truth_by.get(key, ())), default=0.0) for p in spans]
            for key, spans in pred_by.items()}
    num_truth = {key: len(v) for key, v in truth_by.items()}
    num_pred = {key: len(v) for key, v in pred_by.items()}
    scores = []
    for threshold in thresholds:
        tps = {key: sum(iou >= threshold for iou in ious) for key, ious in best.items()}
        micro_r = sum(tps.values()) / sum(num_truth.values()) if sum(num_truth.values()) else 0.0
        micro_p = sum(tps.values()) / sum(num_pred.values()) if sum(num_pred.values()) else 0.0
        recalls = [tps.get(key, 0) / n if n else 0.0 for key, n in num_truth.items()]
        precisions = [tps.get(key, 0) / n if n else 0.0 for key, n in num_pred.items()]
        macro_r = sum(recalls) / len(recalls) if recalls else 0.0
        macro_p = sum(precisions) / len(precisions) if precisions else 0.0
        scores.append({"threshold": threshold, "micro": _prf(micro_p, micro_r), "macro": _prf(macro_p, macro_r)})
    return scores


def paired_soft_scores(instances, annotations, documents):
    """``[(truth bools, scores)]`` per predicted (annotation_id, docid), truth from the annotations' spans."""
    truth = {}
    for a in annotations:
        for e in a.all_evidences():
            marks = truth.setdefault((a.annotation_id, e.docid), [False] * len(documents[e.docid]))
            marks[e.start_token:e.end_token] = [True] * (e.end_token - e.start_token)
    pairs = []
    for inst in instances:
        for r in inst["rationales"]:
            key = (str(inst["annotation_id"]), r["docid"])
            pairs.append((truth.get(key, [False] * len(documents[r["docid"]])), r["soft_rationale_predictions"]))
    return pairs


def score_soft_tokens(pairs):
    """AUPRC, average precision and ROC AUC of soft token scores (see the module docstring)."""
    if not pairs:
        return {"auprc": 0.0, "average_precision": 0.0, "roc_auc_score": 0.0}
    auprcs, aps, rocs = [], [], []
    for truth, scores in pairs:
        truth = [int(t) for t in truth]
        if sum(truth) == 0:
            continue
        precision, recall, _ = precision_recall_curve(truth, scores)
        auprcs.append(auc(recall, precision))
        if sum(truth) < len(truth):
            aps.append(average_precision_score(truth, scores))
            rocs.append(roc_auc_score(truth, scores))
    mean = lambda values: float(np.mean(values)) if values else None  # noqa: E731
    return {"auprc": mean(auprcs), "average_precision": mean(aps), "roc_auc_score": mean(rocs)}


def _kl(full, reduced):
    keys = list(full)
    return entropy([reduced[k] for k in keys], [full[k] for k in keys])


def _aopc(instances, thresholds, key):
    rows = []
    for inst in instances:
        label = inst["classification"]
        points = {x["threshold"]: x[key][label] for x in inst["thresholded_scores"]}
        rows.append([inst["classification_scores"][label] - points[t] for t in thresholds])
    rows = np.asarray(rows)
    return float(rows.mean()), rows.mean(axis=0).tolist()


def score_classifications(instances, annotations, documents, aopc_thresholds):
    """Accuracy, P/R/F1 and, where given, the faithfulness scores (see the module docstring)."""
    labels = sorted({a.classification for a in annotations})
    by_id = {str(inst["annotation_id"]): inst for inst in instances}
    truth = [a.classification for a in annotations]
    predicted = [by_id[a.annotation_id]["classification"] for a in annotations]
    scores = {"accuracy": accuracy_score(truth, predicted),
              "prf": classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)}
    first = instances[0]
    for name in ("comprehensiveness", "sufficiency"):
        field = f"{name}_classification_scores"
        if field in first:
            full, reduced = [x["classification_scores"] for x in instances], [x[field] for x in instances]
            chosen = [x["classification"] for x in instances]
            scores[name] = float(np.mean([f[c] - r[c] for f, r, c in zip(full, reduced, chosen)]))
            scores[f"{name}_entropy"] = float(np.mean([entropy(list(f.values())) - entropy(list(r.values()))
                                                       for f, r in zip(full, reduced)]))
            scores[f"{name}_kl"] = float(np.mean([_kl(f, r) for f, r in zip(full, reduced)]))
    if "thresholded_scores" in first:
        thresholds = aopc_thresholds or sorted({x["threshold"] for x in first["thresholded_scores"]})
        scores["aopc_thresholds"] = list(thresholds)
        for name in ("comprehensiveness", "sufficiency"):
            total, points = _aopc(instances, thresholds, f"{name}_classification_scores")
            scores[f"{name}_aopc"], scores[f"{name}_aopc_points"] = total, points
    if "tokens_to_flip" in first:
        scores["tokens_to_flip"] = float(np.mean(
            [by_id[a.annotation_id]["tokens_to_flip"] / sum(len(documents[d]) for d in
                                                            {e.docid for e in a.all_evidences()} or {a.docid})
             for a in annotations]))
    return scores


OPTIONAL_FIELDS = ("classification", "classification_scores", "comprehensiveness_classification_scores",
                   "sufficiency_classification_scores", "tokens_to_flip", "thresholded_scores")


def verify_instances(instances, documents):
    """Raise ``DataError`` (one line) for results that ERASER's scorer rejects."""
    if not instances:
        raise DataError("the results file holds no instances")
    seen = set()
    for number, inst in enumerate(instances, 1):
        if not isinstance(inst, dict) or "annotation_id" not in inst or not isinstance(inst.get("rationales"), list):
            raise DataError(f"results line {number}: needs 'annotation_id' and a 'rationales' list")
        if inst["annotation_id"] in seen:
            raise DataError(f"results line {number}: annotation_id {inst['annotation_id']!r} appears twice")
        seen.add(inst["annotation_id"])
        for rationale in inst["rationales"]:
            docid = rationale.get("docid")
            if docid not in documents:
                raise DataError(f"results line {number}: no document for docid {docid!r}")
            length = len(documents[docid])
            spans = [(h["start_token"], h["end_token"]) for h in rationale.get("hard_rationale_predictions") or []]
            for start, end in spans:
                if not 0 <= start < end <= length:
                    raise DataError(f"results line {number}: span [{start}, {end}) is outside document {docid!r} "
                                    f"of {length} tokens")
            distinct = sorted(set(spans))
            if any(b[0] < a[1] for a, b in zip(distinct, distinct[1:])):
                raise DataError(f"results line {number}: overlapping hard predictions in {docid!r}")
            soft = rationale.get("soft_rationale_predictions")
            if soft is not None and len(soft) != length:
                raise DataError(f"results line {number}: {len(soft)} soft scores for document {docid!r} of "
                                f"{length} tokens")
    for field in OPTIONAL_FIELDS:
        present = sum(field in inst for inst in instances)
        if 0 < present < len(instances):
            raise DataError(f"'{field}' is given for {present} of {len(instances)} instances: all or none")
    soft = [any("soft_rationale_predictions" in r for r in inst["rationales"]) for inst in instances]
    if any(soft) and not all(soft):
        raise DataError("soft_rationale_predictions are given for some instances only: all or none")


def score(instances, annotations, documents, iou_thresholds=(0.5,), aopc_thresholds=None):
    """Every metric the inputs allow, as a dict (the keys of ERASER's score file)."""
    scores = {}
    ids = {a.annotation_id for a in annotations}
    if not any(str(inst["annotation_id"]) in ids for inst in instances):
        raise DataError("none of the results' annotation ids is in the split's annotations (wrong --split?)")
    pred = predicted_rationales(instances)
    if pred:
        truth = truth_rationales(annotations)
        if iou_thresholds:
            scores["iou_scores"] = partial_match_score(truth, pred, iou_thresholds)
        scores["rationale_prf"] = score_hard_rationale_predictions(truth, pred)
        scores["token_prf"] = score_hard_rationale_predictions(
            list(chain.from_iterable(r.to_token_level() for r in truth)),
            list(chain.from_iterable(r.to_token_level() for r in pred)))
    if any("soft_rationale_predictions" in r for r in instances[0]["rationales"]):
        scores["token_soft_metrics"] = score_soft_tokens(paired_soft_scores(instances, annotations, documents))
    if "classification" in instances[0]:
        missing = ids - {str(inst["annotation_id"]) for inst in instances}
        if missing:
            raise DataError(f"no classification for annotation {sorted(missing)[0]!r}")
        scores["classification_scores"] = score_classifications(instances, annotations, documents, aopc_thresholds)
    return scores


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="ERASER folder with {train,val,test}.jsonl and docs")
    parser.add_argument("--split", required=True, choices=["train", "val", "test"], help="which split to score")
    parser.add_argument("--results", required=True,
                        help="results jsonl: {annotation_id, rationales: [{docid, hard_rationale_predictions: "
                             "[{start_token, end_token}], soft_rationale_predictions: [score per token]}], "
                             "classification, classification_scores, ...}; optional fields in all lines or none")
    parser.add_argument("--strict", action="store_true",
                        help="require classifications and IOU thresholds (ERASER's strict scoring)")
    parser.add_argument("--iou_thresholds", nargs="+", type=float, default=[0.5],
                        help="IOU thresholds of the partial-match F1 (default 0.5)")
    parser.add_argument("--score_file", default=None, help="also write the scores to this JSON file")
    parser.add_argument("--aopc_thresholds", nargs="+", type=float, default=[0.01, 0.05, 0.1, 0.2, 0.5],
                        help="thresholds averaged by AOPC (default 0.01 0.05 0.1 0.2 0.5)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    annotations = load_split(args.data_dir, args.split)
    instances = load_jsonl(args.results)
    docids = {r.get("docid") for inst in instances if isinstance(inst, dict) for r in inst.get("rationales") or []}
    docids |= {e.docid for a in annotations for e in a.all_evidences()}
    documents = load_flattened_documents(args.data_dir, {d for d in docids if isinstance(d, str)})
    verify_instances(instances, documents)
    verify_evidence(annotations, documents)
    if args.strict and not (args.iou_thresholds and "classification" in instances[0]):
        raise DataError("--strict needs --iou_thresholds and a 'classification' in every result")
    scores = score(instances, annotations, documents, args.iou_thresholds, args.aopc_thresholds)
    print(json.dumps(scores, indent=2, sort_keys=True))
    if args.score_file:
        Path(args.score_file).write_text(json.dumps(scores, indent=4, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    run(main)
