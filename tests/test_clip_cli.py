"""The CLIP CLI as a user runs it (in-process through ``baselines.cli.run``): outputs, raw maps, one-line errors."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.cli import run
from baselines.models.clip import openai_layout
from tiny_clip import CONTEXT, VOCAB, open_clip_tiny

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("clip_explain", ROOT / "baselines/CLIP/explain.py")
clip_explain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_explain)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny CLIP card (the shipped model's form: OpenAI-layout weights, a word vocabulary) and images."""
    folder = tmp_path_factory.mktemp("clip")
    torch.save(openai_layout(open_clip_tiny(lively=True).state_dict()), folder / "tiny.pth")
    config = {"embed_dim": 16, "image_size": 64, "patch_size": 16, "vision_width": 64, "vision_layers": 2,
              "vision_heads": 2, "context_length": CONTEXT, "vocab_size": VOCAB, "text_width": 64, "text_layers": 2,
              "text_heads": 2, "quick_gelu": True}
    words = [f"w{i}" for i in range(VOCAB - 8)] + ["a", "dog", "photo", "cat"]
    (folder / "tiny.json").write_text(json.dumps({"family": "clip", "config": config, "mean": [0.5] * 3,
                                                  "std": [0.5] * 3, "vocabulary": ["<pad>", "<unk>", *words,
                                                                                   "<start>", "<end>"]}))
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (80, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def cli(capsys, *args):
    """``(exit status, stdout, stderr)`` of the script."""
    status = 0
    try:
        run(lambda: clip_explain.main([*map(str, args), "--device", "cpu"]))
    except SystemExit as error:
        status = error.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_raw_maps_and_png(files, capsys, tmp_path):
    torch.set_num_threads(2)
    status, out, _ = cli(capsys, files / "a.png", files / "b.jpg", "--text", "a dog", "a photo of a cat on a mat",
                         "--model", files / "tiny.json", "--save-raw", tmp_path / "raw.npz", "--output", tmp_path)
    assert status == 0 and out.count("'a dog'") == 2
    raw = np.load(tmp_path / "raw.npz")
    assert raw["image"].shape == (2, 2, 4, 4) and raw["image"].dtype == np.float32
    assert raw["text"].shape == (2, 2, 12) and raw["text"].dtype == np.float32
    eot = np.array([3, 9])
    past = np.arange(12)[None, :] > eot[:, None]
    assert (raw["text"][:, past] == 0).all() and (raw["text"][:, ~past] != 0).any()
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()


def test_overlong_text_is_truncated_with_a_notice(files, capsys, tmp_path):
    status, out, err = cli(capsys, files / "a.png", "--text", " ".join(["cat"] * 30), "--model",
                           files / "tiny.json", "--save-raw", tmp_path / "raw.npz", "--method", "attn_last_layer")
    assert status == 0 and "truncated" in err
    assert np.load(tmp_path / "raw.npz")["text"][0, 0, -1] != 0


@pytest.mark.parametrize("args,message", [
    (["broken.png", "--text", "a cat"], "cannot read image"),
    (["a.png", "--text", "a cat", " "], "empty text"),
    (["a.png", "--text", "a cat", "--weights", "not_clip.pt"], "not a CLIP checkpoint"),
])
def test_bad_input_is_one_line(files, capsys, args, message):
    torch.set_num_threads(2)
    torch.save({"head.weight": torch.zeros(2, 2)}, files / "not_clip.pt")
    args = [files / a if a.endswith((".png", ".pt")) else a for a in args]
    if "--weights" not in args:
        args += ["--model", files / "tiny.json"]
    status, _, err = cli(capsys, *args)
    assert status == 2 and message in err and err.count("\n") == 1
