"""train_synthetic_vit.py on a tiny model and data set, and the shipped synthetic ViT checkpoint."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.data import synthetic  # noqa: E402
from scripts import make_synthetic_data, train_synthetic_vit  # noqa: E402

TINY = ["--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--train-size", "12", "--batch-size", "6",
        "--epochs", "2", "--seed", "3"]
PRETRAINED = ROOT / "baselines" / "models" / "pretrained" / "synthetic_vit.pth"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "data"
    make_synthetic_data.write_dataset(folder, seed=5, num_train=10, num_val=10)
    return folder


def _run(data, output, *extra):
    args = train_synthetic_vit.parse_args(["--data", str(data), "--output", str(output), "--workers", "0",
                                           *TINY, *extra])
    threads = torch.get_num_threads()
    try:
        return train_synthetic_vit.train(args.data, args.output, args, args.resume, threads=1, workers=0)
    finally:
        torch.set_num_threads(threads)


def test_trains_and_writes_checkpoint_and_card(data, tmp_path):
    output = tmp_path / "tiny.pth"
    card = _run(data, output)
    assert json.loads(output.with_suffix(".json").read_text()) == card
    assert card["config"] == {"img_size": 224, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2,
                              "mlp_ratio": 4.0, "num_classes": 10}
    assert card["class_names"] == list(synthetic.CLASS_NAMES) and card["wnids"] == list(synthetic.WNIDS)
    assert card["data_seed"] == 5 and card["seed"] == 3 and card["train_images"] == 24
    assert 0.0 <= card["val_accuracy"] <= 1.0 and len(card["history"]) == 2
    state = torch.load(output, weights_only=True)
    assert all(value.dtype == torch.float32 for value in state.values())
    train_synthetic_vit.build_model(card["config"]).load_state_dict(state)


def test_trains_from_the_written_split(data, tmp_path):
    card = _run(data, tmp_path / "folder.pth", "--train-source", "folder", "--epochs", "1")
    assert card["train_images"] == 10 and card["settings"]["train_source"] == "folder"


def test_refuses_existing_checkpoint_and_resumes_identically(data, tmp_path, monkeypatch):
    straight = tmp_path / "straight.pth"
    _run(data, straight)
    with pytest.raises(SystemExit, match="exists; pass --resume"):
        train_synthetic_vit.main(["--data", str(data), "--output", str(straight), "--workers", "0", *TINY])
    interrupted = tmp_path / "interrupted.pth"
    save = train_synthetic_vit._atomic_save

    def save_then_interrupt(obj, path):
        save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_synthetic_vit, "_atomic_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(data, interrupted)
    monkeypatch.setattr(train_synthetic_vit, "_atomic_save", save)
    assert not interrupted.exists() and interrupted.with_suffix(".state.pt").exists()
    with pytest.raises(SystemExit, match="--lr 0.5 differs"):
        train_synthetic_vit.main(["--data", str(data), "--output", str(interrupted), "--resume", "--lr", "0.5"])
    resumed = _run(data, interrupted, "--resume")
    expected = torch.load(straight, weights_only=True)
    for name, value in torch.load(interrupted, weights_only=True).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    assert resumed["val_accuracy"] == json.loads(straight.with_suffix(".json").read_text())["val_accuracy"]


def test_bad_data_folder_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="run make_synthetic_data.py first"):
        train_synthetic_vit.main(["--data", str(tmp_path), "--output", str(tmp_path / "x.pth")])


def _accuracy(model, card, count, with_object=True):
    transform = train_synthetic_vit.eval_transform()
    images, labels = [], []
    for index in range(count):
        sample = synthetic.generate(card["data_seed"], "val", index, with_object=with_object)
        images.append(transform(synthetic.as_stored(sample.image)))
        labels.append(sample.label)
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(1) for batch in torch.stack(images).split(50)])
    return (predicted == torch.tensor(labels)).float().mean().item()


@pytest.fixture
def one_thread():
    """Per-image tensor ops are slow with 2 intra-op threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shipped_checkpoint_reaches_its_card_accuracy_from_the_object_alone(one_thread):
    card = json.loads(PRETRAINED.with_suffix(".json").read_text())
    assert PRETRAINED.stat().st_size <= 5 * 2**20
    from timm.models.vision_transformer import VisionTransformer
    model = VisionTransformer(**card["config"]).eval()
    model.load_state_dict(torch.load(PRETRAINED, weights_only=True))
    assert card["val_accuracy"] >= 0.95
    assert _accuracy(model, card, 200) >= card["val_accuracy"] - 0.03
    assert _accuracy(model, card, 100, with_object=False) <= 0.3
