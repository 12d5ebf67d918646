"""finetune_20ng.py (TI's settings, 'train' subset, state dict) on a tiny local copy of 20 Newsgroups, and the 20NG
perturbation test end to end on its checkpoint."""
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark.tiny_bert import make_tiny_bert, tiny_params  # noqa: E402
from baselines.BERT import finetune_20ng, perturbation_20ng  # noqa: E402
from baselines.cli import run  # noqa: E402

GROUPS = {"rec.autos": "engine wheels car drive road", "sci.space": "orbit rocket launch moon nasa",
          "talk.politics": "vote senate law election policy"}
HEADER = "From: someone@example.com\nSubject: a post\n\n"


def write_copy(root):
    """ROOT/20news-bydate-{train,test}/<group>/<n>: 4 training and 2 test messages per group, with headers."""
    for subset, count in (("train", 4), ("test", 2)):
        for g, (group, words) in enumerate(GROUPS.items()):
            folder = root / f"20news-bydate-{subset}" / group
            folder.mkdir(parents=True)
            for n in range(count):
                vocabulary = words.split()
                text = " ".join(vocabulary[(n + i) % len(vocabulary)] for i in range(6 + n))
                (folder / str(1000 * g + n)).write_text(HEADER + f"{subset} {text}\n", encoding="latin-1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("20ng")
    write_copy(root / "news")
    texts = [" ".join(GROUPS.values()) + " train test"]
    bert = make_tiny_bert(root / "bert", texts, hidden=16, layers=2, heads=2)
    params = root / "params.json"
    params.write_text(json.dumps(tiny_params(bert)))
    arguments = ["--data-dir", str(root / "news"), "--model_params", str(params), "--epochs", "2", "--batch-size",
                 "4", "--lr", "1e-3", "--max-length", "16", "--device", "cpu"]
    finetune_20ng.main(arguments + ["--output", str(root / "a.pt")])
    return {"root": root, "params": params, "arguments": arguments}


def test_train_subset_without_headers_and_a_state_dict(trained, capsys):
    texts, labels = perturbation_20ng.read_folder(trained["root"] / "news", "train")
    assert len(texts) == 12 and sorted(set(labels)) == [0, 1, 2]
    assert all(text.startswith("train ") and "From:" not in text for text in texts)
    state = torch.load(trained["root"] / "a.pt", weights_only=True)
    assert state["classifier.weight"].shape[0] == finetune_20ng.NUM_LABELS
    assert not (trained["root"] / "a.pt.resume").exists()


def test_same_seed_same_weights(trained):
    torch.set_num_threads(1)
    root = trained["root"]
    finetune_20ng.main(trained["arguments"] + ["--output", str(root / "b.pt"), "--epochs", "1"])
    first = torch.load(root / "b.pt", weights_only=True)
    reference = torch.load(root / "a.pt", weights_only=True)
    assert any(not torch.equal(first[k], reference[k]) for k in reference)
    finetune_20ng.main(trained["arguments"] + ["--output", str(root / "c.pt")])
    again = torch.load(root / "c.pt", weights_only=True)
    assert all(torch.equal(again[k], reference[k]) for k in reference)


def test_perturbation_runs_on_the_checkpoint(trained):
    torch.set_num_threads(1)
    root = trained["root"]
    perturbation_20ng.main(["--data-dir", str(root / "news"), "--model_params", str(trained["params"]),
                            "--checkpoint", str(root / "a.pt"), "--num-samples", "6", "--max-length", "16",
                            "--device", "cpu", "--output", str(root / "result.json")])
    result = json.loads((root / "result.json").read_text())
    assert result["documents"] == 6 and len(result["accuracy"]) == 11 and result["fractions"][-1] == 1.0


def test_missing_copy_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: finetune_20ng.main(["--data-dir", str(tmp_path), "--model_params", str(tmp_path / "p.json"),
                                        "--output", str(tmp_path / "o.pt")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
