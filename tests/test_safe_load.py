"""No file in an output folder runs code when loaded: a crafted pickle that would create a marker file is refused
in one line by every loader of resume state and checkpoints, and the state they write still loads."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark.models.pipeline import bert_pipeline, training  # noqa: E402
from baselines.cli import UserError  # noqa: E402
from baselines.models import ModelError, create_model  # noqa: E402
from scripts import train_synthetic_vit  # noqa: E402
from tiny_bert import hf_tiny  # noqa: E402


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the loader runs code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def craft(path, marker):
    torch.save({"done": 0, "epoch": 1, "payload": Payload(marker)}, path)


def test_bert_pipeline_refuses_crafted_epoch_data_and_resume_state(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "out" / "classifier"
    folder.mkdir(parents=True)
    craft(folder / "classifier_epoch_data.pt", marker)
    with pytest.raises(UserError, match="classifier_epoch_data.pt as tensors"):
        bert_pipeline.ensure_classifier(SimpleNamespace(output_dir=tmp_path / "out", device="cpu"), {}, [], {})
    with pytest.raises(UserError, match="classifier_epoch_data.pt as tensors"):
        training.train_classifier({}, [], [], folder)
    (folder / "classifier_epoch_data.pt").unlink()
    craft(folder / "last.pt", marker)
    hf_tiny().save_pretrained(tmp_path / "bert")
    params = {"bert_dir": str(tmp_path / "bert"), "evidence_classifier": {"classes": ["a", "b", "c"], "lr": 1e-3}}
    with pytest.raises(UserError, match="last.pt as tensors"):
        training.train_classifier(params, [], [], folder)
    assert not marker.exists()


def test_train_synthetic_vit_refuses_crafted_resume_state(tmp_path):
    marker = tmp_path / "ran"
    output = tmp_path / "tiny.pth"
    craft(train_synthetic_vit.state_path(output), marker)
    with pytest.raises(train_synthetic_vit.TrainingError, match="state.pt as tensors.*remove it to start over"):
        train_synthetic_vit.load_resume_state(output)
    assert not marker.exists()


def test_model_checkpoint_refuses_crafted_pickle(tmp_path):
    marker = tmp_path / "ran"
    craft(tmp_path / "w.pth", marker)
    with pytest.raises(ModelError):
        create_model("deit_tiny_patch16_224", weights=tmp_path / "w.pth")
    assert not marker.exists()


def test_resume_state_with_optimizer_and_random_states_loads(tmp_path):
    """What the resumable trainers write (model, Adam state, Python and torch random states, epoch data) is
    tensors and plain values only, so weights_only loading takes it."""
    import random
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "shuffler": random.Random(1).getstate(), "torch_rng": torch.get_rng_state(),
             "epoch_data": {"best_val_loss": float("inf"), "results": {"val_acc": [0.5]}}}
    torch.save(state, tmp_path / "last.pt")
    from baselines.safe_load import load_tensors
    loaded = load_tensors(tmp_path / "last.pt")
    assert loaded["shuffler"] == state["shuffler"] and json.dumps(loaded["epoch_data"]) == json.dumps(
        state["epoch_data"])
    optimizer.load_state_dict(loaded["optimizer"])
