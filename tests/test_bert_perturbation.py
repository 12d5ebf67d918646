"""The BERT perturbation protocol (TI): cumulative removal of top-scored tokens, batched; data sources of 20NG."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.BERT import perturbation_20ng, perturbation_movies  # noqa: E402
from baselines.BERT.perturbation_common import Tally, per_step, perturbed, removal_ranks, report  # noqa: E402
from baselines.eval import metrics  # noqa: E402
from baselines.cli import run  # noqa: E402

KEY = 7


class KeyTokenModel(torch.nn.Module):
    """Predicts class 1 when token KEY is present and unmasked, else class 0."""

    def forward(self, inputs):
        present = ((inputs["input_ids"] == KEY) & (inputs["attention_mask"] == 1)).any(1).float()
        return torch.stack([1 - present, present], dim=1)


def test_steps_are_tis():
    assert len(perturbation_movies.FRACTIONS) == 9 and perturbation_movies.FRACTIONS[-1] == pytest.approx(0.68)
    assert perturbation_movies.FRACTIONS == np.arange(0.52, 0.68, 0.02).tolist()
    assert len(perturbation_20ng.FRACTIONS) == 11 and perturbation_20ng.FRACTIONS[-1] == pytest.approx(1.0)


def test_removal_is_cumulative_and_stays_inside_the_document():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.0, 7.0]])
    ranks = removal_ranks(scores, torch.tensor([[True] * 5 + [False]]))
    assert ranks.tolist() == [[3, 0, 1, 2, 4, 5]]
    inputs = {"input_ids": torch.tensor([[11, 12, 13, 14, 15, 0]]), "attention_mask": torch.tensor([[1] * 5 + [0]])}
    rows = perturbed(inputs, ranks, torch.tensor([[0, 1, 3]]))
    assert rows["input_ids"].tolist() == [[11, 12, 13, 14, 15, 0], [11, 0, 13, 14, 15, 0], [11, 0, 0, 0, 15, 0]]
    assert rows["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 0, 1, 1, 1, 0], [1, 0, 0, 0, 1, 0]]


def test_accuracy_per_step_batched_equals_one_by_one():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 20, (5, 12), generator=generator)
    ids[:, 3] = KEY
    mask = torch.ones_like(ids)
    mask[0, 8:], ids[0, 8:] = 0, 0
    scores = torch.rand(5, 12, generator=generator)
    scores[:, 3] = torch.tensor([0.95, 0.0, 0.5, 0.99, 0.3])
    labels = torch.ones(5, dtype=torch.long)
    fractions = [0.0, 0.1, 0.5, 1.0]
    lengths = mask.sum(1)
    batched = per_step(KeyTokenModel(), {"input_ids": ids, "attention_mask": mask}, scores, labels,
                       fractions, lengths=lengths, chunk=3)["correct"]
    single = sum(per_step(KeyTokenModel(), {"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]},
                          scores[i:i + 1], labels[i:i + 1], fractions, lengths=lengths[i:i + 1])["correct"]
                 for i in range(5))
    assert batched.tolist() == single.tolist()
    assert batched[0] == 5 and batched[-1] == 0
    ranked = removal_ranks(scores, torch.arange(12)[None] < lengths[:, None])[:, 3]
    expected = [sum(int(rank) >= int(int(n) * f) for rank, n in zip(ranked, lengths)) for f in fractions]
    assert batched.tolist() == expected


def key_documents():
    ids = torch.tensor([[11, KEY, 13, 14, 15], [KEY, 12, 13, 14, 15]])
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.3, 0.4], [0.0, 0.1, 0.2, 0.3, 0.4]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, scores, torch.tensor([1, 1])


@pytest.mark.parametrize("neg", [False, True])
def test_abpc_from_both_removal_orders_by_hand(neg):
    """KeyTokenModel's class-1 logit is 1 while KEY stays. Document 0 ranks KEY first (most relevant): gone from
    f = 0.2 on when removed most-relevant-first, kept up to f = 0.8 least-relevant-first; document 1 ranks KEY last
    the other way round. With ``--neg`` the scores are negated and the orders swap roles, the figure does not."""
    inputs, scores, labels = key_documents()
    fractions = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    morf = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=float)
    lerf = np.array([[1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=float)
    tally = Tally(fractions, neg, both_orders=True)
    tally.add(KeyTokenModel(), inputs, -scores if neg else scores, labels, clean=2, chunk=4)
    result = tally.report()
    expected = np.mean([np.trapezoid(lerf[i] - morf[i], fractions) for i in range(2)])
    assert result["abpc_logit"] == pytest.approx(expected) == pytest.approx(0.0)
    assert result["morf_logit"] == morf.mean(0).tolist() and result["lerf_logit"] == lerf.mean(0).tolist()
    absent, present = torch.tensor([0.0, 1.0]).softmax(0).tolist()
    assert result["morf_prob"][1] == pytest.approx((absent + present) / 2)
    single = Tally(fractions, neg, both_orders=True)
    single.add(KeyTokenModel(), {k: v[:1] for k, v in inputs.items()}, (-scores if neg else scores)[:1],
               labels[:1], clean=1)
    assert single.report()["abpc_logit"] == pytest.approx(metrics.area_between_curves(lerf[:1], morf[:1],
                                                                                      fractions)) == 0.8
    accuracy_only = Tally(fractions, neg, both_orders=False)
    accuracy_only.add(KeyTokenModel(), inputs, -scores if neg else scores, labels, clean=2)
    assert "abpc_logit" not in accuracy_only.report() and accuracy_only.report()["accuracy"] == result["accuracy"]


def test_report_area():
    result = report([0.0, 0.5, 1.0], [10, 5, 0], 10, 10)
    assert result["accuracy"] == [100.0, 50.0, 0.0] and result["auc"] == pytest.approx(50.0)


def test_20ng_offline_fetch_fails_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: perturbation_20ng.main(["--data-home", str(tmp_path), "--model_params",
                                            str(ROOT / "BERT_params" / "movies_bert.json"),
                                            "--checkpoint", str(tmp_path / "c.pt"), "--device", "cpu"]))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "20 Newsgroups not found" in error and error.count("\n") == 1


def test_20ng_exports(tmp_path):
    records = [{"text": "a b", "label": 3}, {"text": "c", "label": 0}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "b.json").write_text(json.dumps({"data": ["a b", "c"], "target": [3, 0]}))
    (tmp_path / "d.csv").write_text('text,label\n"a b",3\nc,0\n')
    for name in ("d.json", "d.jsonl", "b.json", "d.csv"):
        assert perturbation_20ng.read_export(tmp_path / name) == (["a b", "c"], [3, 0])
    (tmp_path / "bad.json").write_text(json.dumps([{"body": "x"}]))
    with pytest.raises(ValueError, match="expected text/label"):
        perturbation_20ng.read_export(tmp_path / "bad.json")
