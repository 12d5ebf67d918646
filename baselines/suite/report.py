"""RESULTS.md, results.csv, results.json and the figures of a reproduction run, from its step records.

Tables in the papers' layout: segmentation (TE Table 1: pixel accuracy, mAP, mIoU; plus mF1), perturbation AUC
(TE Table 2: negative / positive x predicted / target class; TE's AUC and TI's with the (1, 0) end point), ERASER
token-F1 against k (TE's figure) and the BERT Movies perturbation (TI). Each column ranks the methods (1 = best,
ties share the better rank). The papers' reported numbers stand beside ours where they exist, and for each of
TE's columns the report says whether TE's order of its six methods holds here, naming the pairs that flip.
"""
import csv
import io
import json
from pathlib import Path

import numpy as np

from scripts.collect_results import PAPER_ORDER, PAPER_PERTURBATION, PAPER_SEGMENTATION

SEGMENTATION_COLUMNS = (("pixel acc.", "pixel_accuracy", 0), ("mAP", "mean_ap", 1), ("mIoU", "mean_iou", 2),
                        ("mF1", "mean_f1", None))
PERTURBATION_COLUMNS = (("top", True, "negative, predicted"), ("target", True, "negative, target"),
                        ("top", False, "positive, predicted"), ("target", False, "positive, target"))
CELL_NOTE = "Each cell: our value [rank among these methods, 1 = best] (the paper's value, where it reports one)."
PAPER_NOTE = ("(paper): Chefer et al., CVPR 2021, ViT-B/16 on ImageNet, as reported (originals.md 1.8); a different "
              "model and data set from the mini suite's, shown for the layout and the ranking, not for the values.")


def ranks(values, higher_better):
    """Rank of each value (1 = best; equal values share the better rank; None ranks nowhere)."""
    present = [v for v in values if v is not None]
    return [None if v is None else 1 + sum((w > v) if higher_better else (w < v) for w in present)
            for v in values]


def fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def ordered(methods):
    """TE's column order first, then the others in the registry's order."""
    return sorted(methods, key=lambda m: (PAPER_ORDER.index(m) if m in PAPER_ORDER else len(PAPER_ORDER)))


def ranking_check(ours, paper, higher_better):
    """A sentence on whether the paper's order of the methods that both have holds in ours."""
    common = [m for m in PAPER_ORDER if m in ours and m in paper and ours[m] is not None]
    flips = []
    for i, a in enumerate(common):
        for b in common[i + 1:]:
            paper_says = (paper[a] > paper[b]) == higher_better if paper[a] != paper[b] else None
            ours_says = (ours[a] > ours[b]) == higher_better if ours[a] != ours[b] else None
            if paper_says is not None and ours_says != paper_says:
                better, worse = (a, b) if paper_says else (b, a)
                flips.append(f"{better} > {worse}")
    if len(common) < 2:
        return "too few of the paper's methods to compare"
    if not flips:
        return f"holds (all {len(common) * (len(common) - 1) // 2} pairs of the paper's methods in the paper's order)"
    return (f"does NOT hold: {len(flips)} of the paper's ordered pairs flip here (paper: "
            + "; ".join(flips) + ")")


TI_METHODS = ("beyond_intuition_h", "beyond_intuition_t")


def leader_check(values, claimed, higher_better, what):
    """Whether the best of ``values`` is one of the ``claimed`` methods, said plainly."""
    present = {m: v for m, v in values.items() if v is not None}
    if not any(m in present for m in claimed):
        return "cannot be checked (those methods did not run)"
    best = max(present.values()) if higher_better else min(present.values())
    leaders = [m for m, v in present.items() if v == best]
    if any(m in leaders for m in claimed):
        return f"holds here (best {what}: {', '.join(leaders)})"
    return f"does NOT hold here (best {what}: {', '.join(leaders)})"


class Report:
    def __init__(self, config, steps, records):
        self.config = config
        self.records = {step.key: record for step, record in zip(steps, records)}
        self.csv_rows, self.sections = [], []

    def result(self, key):
        record = self.records.get(key)
        return record["result"] if record else None

    def add_csv(self, name, method, column, value, paper=None, rank=None):
        self.csv_rows.append([name, method, column, "" if value is None else repr(float(value)),
                              "" if paper is None else paper, "" if rank is None else rank])

    def segmentation(self):
        methods = ordered([m for m in self.config.methods if self.result(f"segmentation/{m}")])
        if not methods:
            return
        rows, checks = [], []
        for label, key, paper_index in SEGMENTATION_COLUMNS:
            values = [100 * self.result(f"segmentation/{m}")[key] for m in methods]
            paper = {m: v[paper_index] for m, v in PAPER_SEGMENTATION.items()} if paper_index is not None else {}
            rows.append([label] + self.cells("segmentation", label, methods, values, ranks(values, True), paper))
            if paper:
                checks.append(f"- {label}: {ranking_check(dict(zip(methods, values)), paper, True)}")
        images = self.result(f"segmentation/{methods[0]}")["num_images"]
        self.sections.append(
            f"## Segmentation (TE Table 1), {images} images, % (higher is better)\n\n{CELL_NOTE}\n\n"
            + table(["metric"] + methods, rows) + f"\n{PAPER_NOTE}\n\nDoes TE's ranking hold here?\n\n"
            + "\n".join(checks) + "\n")

    def cells(self, name, column, methods, values, rank, paper, digits=2):
        """Table cells ``value [rank] (paper)``, and the same numbers as CSV rows."""
        cells = []
        for method, value, place in zip(methods, values, rank):
            reported = paper.get(method)
            self.add_csv(name, method, column, value, reported, place)
            cells.append("" if value is None else
                         f"{value:.{digits}f} [{place}]" + (f" ({reported:.2f})" if reported is not None else ""))
        return cells

    def perturbation(self):
        methods = ordered([m for m in self.config.methods if self.result(f"perturbation/{m}/top/pos")])
        if not methods:
            return
        te_rows, ti_rows, checks = [], [], []
        for vis_class, neg, label in PERTURBATION_COLUMNS:
            runs = [self.result(f"perturbation/{m}/{vis_class}/{'neg' if neg else 'pos'}") for m in methods]
            te = [r and r["auc"] for r in runs]
            ti = [r and r["auc_ti"] for r in runs]
            paper = {m: v[(neg, vis_class)] for m, v in PAPER_PERTURBATION.items()}
            te_rows.append([label] + self.cells("perturbation", f"{label} AUC", methods, te, ranks(te, neg), paper))
            ti_rows.append([label] + self.cells("perturbation", f"{label} AUC (TI)", methods, ti, ranks(ti, neg), {}))
            checks.append(f"- {label} ({'higher' if neg else 'lower'} is better): "
                          f"{ranking_check(dict(zip(methods, te)), paper, neg)}")
        abpc_rows = []
        for vis_class, name in (("top", "predicted"), ("target", "target")):
            runs = [self.result(f"perturbation/{m}/{vis_class}/pos") or {} for m in methods]
            for key, label in (("abpc_logit", "logit"), ("abpc_prob", "probability")):
                values = [r.get(key) for r in runs]
                if any(v is not None for v in values):
                    abpc_rows.append([f"{name}, {label}"] + self.cells(
                        "perturbation", f"ABPC {name} {label}", methods, values, ranks(values, True), {}, 3))
        images = self.result(f"perturbation/{methods[0]}/top/pos")["num_images"]
        self.sections.append(
            f"## Perturbation (TE Table 2), {images} images, AUC in %\n\n"
            "Negative perturbation removes the least relevant pixels first (higher AUC is better), positive the most "
            "relevant first (lower is better); predicted / target: the class explained. "
            f"{CELL_NOTE}\n\nAUC as TE's maintainer computes it, `100 * trapezoid(y, x)` over x = 0, 0.1, ..., 0.9 "
            "with the clean accuracy at 0:\n\n" + table(["setting"] + methods, te_rows)
            + "\nAUC as TI computes it (sklearn `auc` with the end point (1, 0)):\n\n"
            + table(["setting"] + methods, ti_rows)
            + ("\nAttnLRP's area between the least- and most-relevant-first curves of the explained class's logit "
               "and probability (ABPC, higher is better; from the positive run, which also runs the other order):"
               "\n\n" + table(["class, curve"] + methods, abpc_rows) if abpc_rows else "")
            + f"\n{PAPER_NOTE}\n\nDoes TE's ranking hold here?\n\n" + "\n".join(checks) + "\n")

    def eraser(self):
        methods = [m for m in self.config.text_methods + ["random"] if self.result(f"eraser/{m}")]
        if not methods:
            return
        ks = sorted(self.result(f"eraser/{methods[0]}")["token_f1"], key=int)
        mean = [float(np.mean([self.result(f"eraser/{m}")["token_f1"][k] for k in ks])) for m in methods]
        mean_rank = ranks(mean, True)
        rows = []
        for i, method in enumerate(methods):
            f1 = self.result(f"eraser/{method}")["token_f1"]
            rows.append([method] + [fmt(100 * f1[k], 1) for k in ks] + [fmt(100 * mean[i], 1), mean_rank[i]])
            for k in ks:
                self.add_csv("eraser_token_f1", method, f"k={k}", 100 * f1[k])
            self.add_csv("eraser_token_f1", method, "mean over k", 100 * mean[i], None, mean_rank[i])
        first = self.result(f"eraser/{methods[0]}")
        above = [m for i, m in enumerate(methods) if m != "random" and mean[i] > mean[methods.index("random")]] \
            if "random" in methods else []
        self.sections.append(
            f"## ERASER Movie Reviews token-F1 against k (TE's figure), {first['test_documents']} test documents, "
            f"instance-macro token F1 in %\n\nClassifier test accuracy {100 * first['test_accuracy']:.1f}%. TE shows "
            "this as a figure without numbers, transformer_attribution its best curve; that claim "
            + leader_check(dict(zip(methods, mean)), ("transformer_attribution",), True, "mean token-F1") + ".\n\n"
            + table(["method"] + [f"k={k}" for k in ks] + ["mean", "rank"], rows)
            + (f"\n{len(above)} of {len(methods) - 1} methods beat the random ranking on the mean over k.\n"
               if "random" in methods else ""))

    def bert_perturbation(self):
        methods = [m for m in self.config.text_methods if self.result(f"bert-perturbation/{m}/pos")]
        if not methods:
            return
        pos = [self.result(f"bert-perturbation/{m}/pos") for m in methods]
        neg = [self.result(f"bert-perturbation/{m}/neg") for m in methods]
        pos_auc, neg_auc = [r["auc"] for r in pos], [r and r["auc"] for r in neg]
        abpc = [r.get("abpc_logit") for r in pos]
        pos_rank, neg_rank, abpc_rank = ranks(pos_auc, False), ranks(neg_auc, True), ranks(abpc, True)
        rows = []
        for i, method in enumerate(methods):
            rows.append([method, fmt(pos_auc[i], 3), pos_rank[i], fmt(neg_auc[i], 3), neg_rank[i], fmt(abpc[i], 4),
                         abpc_rank[i]] + [fmt(a, 1) for a in pos[i]["accuracy"]])
            self.add_csv("bert_perturbation", method, "positive AUC", pos_auc[i], None, pos_rank[i])
            self.add_csv("bert_perturbation", method, "negative AUC", neg_auc[i], None, neg_rank[i])
            self.add_csv("bert_perturbation", method, "ABPC logit", abpc[i], None, abpc_rank[i])
        fractions = pos[0]["fractions"]
        self.sections.append(
            f"## BERT perturbation on Movies (TI), {pos[0]['documents']} documents, clean accuracy "
            f"{pos[0]['clean_accuracy']:.1f}%\n\nThe top-scored tokens of each document are removed, cumulatively, "
            f"at fractions {fractions[0]:.2f} to {fractions[-1]:.2f}; AUC = sklearn `auc` over those fractions of "
            "the accuracy in % (positive: lower is better; negative: higher is better); ABPC = the area between the "
            "least- and most-relevant-first curves of the explained class's logit over the same fractions "
            "(AttnLRP's figure, higher is better). The columns after the ranks give the positive curve. TI reports "
            "its methods ahead of the baselines; on positive AUC that claim "
            + leader_check(dict(zip(methods, pos_auc)), TI_METHODS, False, "positive AUC") + ", on negative AUC it "
            + leader_check(dict(zip(methods, neg_auc)), TI_METHODS, True, "negative AUC") + ".\n\n"
            + table(["method", "AUC pos", "rank", "AUC neg", "rank", "ABPC logit", "rank"]
                    + [f"pos {f:.2f}" for f in fractions], rows))

    def notes(self):
        notes = [f"- {key}: {record['note']}" for key, record in self.records.items() if record.get("note")]
        return "## Notes\n\n" + "\n".join(notes) + "\n" if notes else ""

    def markdown(self, figures):
        config = self.config
        images = {"segmentation", "perturbation"} & set(config.tests)
        texts = {"eraser", "bert-perturbation"} & set(config.tests)
        head = [f"# Reproduction report: {config.suite} suite\n",
                f"Tests: {', '.join(config.tests)}; device type: {config.device.split(':')[0]}."
                + (f" Image model: {config.vit_model or 'synthetic_vit (shipped)'}; image methods: "
                   f"{', '.join(config.methods)}." if images else "")
                + (f" Text model: {Path(config.bert_params).name}; text methods: {', '.join(config.text_methods)}."
                   if texts else "")
                + " Made by `scripts/reproduce.py`: every number comes from the evaluate functions the individual "
                "scripts run (step records in `steps/`, the scripts' outputs in `runs/` and `bert/`).\n"]
        body = "\n".join(self.sections)
        figs = "\n".join(f"[{name}](figures/{name})" if name.endswith(".html") else f"![{name}](figures/{name})"
                          for name in figures)
        return "\n".join(head) + "\n" + self.notes() + "\n" + body + ("\n## Figures\n\n" + figs + "\n" if figs
                                                                         else "")

    def write(self, folder):
        folder = Path(folder)
        for part in (self.segmentation, self.perturbation, self.eraser, self.bert_perturbation):
            part()
        from baselines.suite import figures
        made = figures.make_all(self, folder / "figures")
        write_text(folder / "RESULTS.md", self.markdown(made))
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            [["table", "method", "column", "value", "paper", "rank"], *self.csv_rows])
        write_text(folder / "results.csv", buffer.getvalue())
        write_text(folder / "results.json", json.dumps(
            {key: {"settings": r["settings"], "result": r["result"], "note": r.get("note")}
             for key, r in self.records.items()}, indent=1, sort_keys=True) + "\n")
        return folder / "RESULTS.md"


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".tmp").write_text(text)
    path.with_name(path.name + ".tmp").replace(path)
