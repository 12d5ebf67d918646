"""The single-image CLI as a user runs it: outputs, raw maps, and one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_models import ours_from, timm_tiny

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    """The script on CPU unless ``args`` name a device."""
    device = () if "--device" in args else ("--device", "cpu")
    return subprocess.run([sys.executable, str(ROOT / "baselines/ViT/explain.py"), *map(str, args), *device],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """A tiny model card + checkpoint, the same form as the shipped model."""
    folder = tmp_path_factory.mktemp("model")
    model = ours_from(timm_tiny(depth=4, offset=0.5))
    torch.save(model.state_dict(), folder / "tiny.pth")
    c = model.config
    (folder / "tiny.json").write_text(json.dumps({
        "config": {"embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads, "patch_size": 16,
                   "img_size": 64, "num_classes": 5, "mlp_ratio": 4.0},
        "mean": [0.5] * 3, "std": [0.5] * 3, "class_names": ["a", "b", "c", "d", "e"]}))
    return folder / "tiny.json"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_raw_maps_and_overlays(card, images, tmp_path):
    result = cli(*images, "--model", card, "--method", "rollout", "--save-raw", tmp_path / "raw.npy",
                 "--output", tmp_path / "out", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    raw = np.load(tmp_path / "raw.npy")
    assert raw.shape == (2, 4, 4) and raw.dtype == np.float32
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0_rollout.png", "img1_rollout.png"]
    assert "img0.png:" in result.stdout


def test_all_methods_write_one_panel_per_image(card, images, tmp_path):
    result = cli(*images, "--model", card, "--method", "all", "--steps", "2", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img0.png", "img1.png"]


@pytest.mark.parametrize("args,message", [
    (["missing.png"], "cannot read image"),
    (["{img}", "--model", "no_such_vit"], "unknown model"),
    (["{img}", "--method", "nonsense"], "unknown method"),
    (["{img}", "--class-index", "99"], "out of range"),
    (["{img}", "--start-layer", "9"], "--start-layer"),
    (["{img}", "--weights", "nowhere.pth"], "checkpoint not found"),
    (["{img}", "--method", "rollout", "attn_last_layer", "--save-raw", "x.npy"], "exactly one method"),
])
def test_bad_input_is_one_line(card, images, args, message):
    args = [str(images[0]) if a == "{img}" else a for a in args]
    if "--model" not in args:
        args += ["--model", str(card)]
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_inputs_with_the_same_stem_keep_their_own_png(card, images, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    twin = other / images[0].name
    twin.write_bytes(images[1].read_bytes())
    result = cli(images[0], twin, "--model", card, "--method", "rollout", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0-1_rollout.png", "img0-2_rollout.png"]
