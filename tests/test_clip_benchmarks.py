"""The CLIP benchmarks: TI's zero-shot perturbation test against a per-image loop, the segmentation test on a
zero-shot CLIP, one-line errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.CLIP import perturbation as PERTURBATION
from baselines.methods import explain
from baselines.models import create_model
from baselines.models.clip import openai_layout
from baselines.ViT import imagenet_seg_eval as SEGMENTATION
from scripts import make_synthetic_data
from tiny_clip import CONTEXT, VOCAB, open_clip_tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_data.write_dataset(root, num_train=0, num_val=12)
    return root


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """A random tiny CLIP card over the synthetic classes (224 x 224 images, patch 32)."""
    folder = tmp_path_factory.mktemp("clip")
    reference = open_clip_tiny(lively=True)
    state = openai_layout(reference.state_dict())
    state["visual.conv1.weight"] = F.interpolate(state["visual.conv1.weight"], size=(32, 32)) / 4
    state["visual.positional_embedding"] = torch.randn(50, 64) * 0.1
    torch.save(state, folder / "tiny.pth")
    from baselines.data.synthetic import CLASS_NAMES
    words = [f"w{i}" for i in range(VOCAB - 8 - len(CLASS_NAMES))] + ["a", "photo", "of", "an", *CLASS_NAMES]
    config = {"embed_dim": 16, "image_size": 224, "patch_size": 32, "vision_width": 64, "vision_layers": 2,
              "vision_heads": 2, "context_length": CONTEXT, "vocab_size": VOCAB, "text_width": 64, "text_layers": 2,
              "text_heads": 2, "quick_gelu": True}
    (folder / "tiny.json").write_text(json.dumps({
        "family": "clip", "config": config, "mean": [0.5] * 3, "std": [0.5] * 3, "class_names": list(CLASS_NAMES),
        "vocabulary": ["<pad>", "<unk>", *words, "<start>", "<end>"]}))
    return folder / "tiny.json"


def test_perturbation_equals_per_image_loop(data, card, tmp_path):
    torch.set_num_threads(2)
    index = tmp_path / "pert_index.npy"
    np.save(index, np.array([3, 0, 7, 11, 5], dtype=np.int64))
    status = PERTURBATION.main(["--method", "generic_attribution", "--data", str(data / "imagenet"), "--model",
                                str(card), "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
                                "--pert-index", str(index), "--output", str(tmp_path / "out")])
    assert status == 0
    hits = np.load(tmp_path / "out" / "perturbation_hits.npy")
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert hits.shape == (5, 11) and result["num_images"] == 5
    assert np.allclose(result["accuracy"], hits.mean(0))
    assert np.isclose(result["auc_ti"], np.trapezoid(hits.mean(0) * 100, np.linspace(0, 1, 11)))
    clip = create_model(str(card))
    dataset, names, _ = PERTURBATION.zero_shot_set(str(data / "imagenet"), 224)
    model = clip.zero_shot(names)
    mean, std = torch.tensor(model.mean).view(3, 1, 1), torch.tensor(model.std).view(3, 1, 1)
    for row, expected in zip([3, 0, 7, 11, 5], hits):
        image, label = dataset[row]
        x = ((image.float() / 255 - mean) / std)[None]
        predicted = int(model(x).argmax())
        raw = explain(model, x, "generic_attribution", class_index=predicted)[0]
        heat = F.interpolate(raw[None, None], scale_factor=32, mode="bilinear")[0, 0].flatten()
        got = []
        for k in np.linspace(0, 1, 11):
            top = heat.argsort(descending=True, stable=True)[:int(224 * 224 * k)]
            flat = x.clone().view(1, 3, -1)
            flat[:, :, top] = 0
            got.append(int(model(flat.view_as(x)).argmax()) == label)
        assert got == expected.astype(bool).tolist()


def test_segmentation_runs_on_a_zero_shot_clip(data, card, tmp_path):
    torch.set_num_threads(2)
    status = SEGMENTATION.main(["--method", "generic_attribution", "--imagenet-seg-path",
                                str(data / "gtsegs_ijcv.mat"), "--model", str(card), "--batch-size", "4",
                                "--num-workers", "0", "--device", "cpu", "--limit", "4", "--output", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    assert status == 0 and result["num_images"] == 4 and 0 <= result["mean_iou"] <= 1


def test_bad_pert_index_is_one_line(data, card, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.array([99]))
    from baselines.eval.cli import run
    status = run(PERTURBATION.main, ["--data", str(data / "imagenet"), "--model", str(card), "--pert-index",
                                     str(tmp_path / "bad.npy"), "--device", "cpu", "--num-workers", "0"])
    assert status == 2 and "outside" in capsys.readouterr().err
