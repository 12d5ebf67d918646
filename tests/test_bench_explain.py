"""``scripts/bench_explain.py`` runs for each model family and writes the JSON the issue fixed (keys unchanged)."""
import json

import pytest

from scripts import bench_explain

FAMILIES = [("vit_tiny_patch16_224", []), ("minilm", ["--length", "16"]), ("clip:ViT-S-32", [])]


@pytest.mark.parametrize("model, extra", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_every_family_writes_the_same_json(model, extra, tmp_path):
    out = tmp_path / "bench.json"
    bench_explain.main(["--model", model, *extra, "--batch-size", "2", "--rounds", "1", "--device", "cpu",
                        "--methods", "rollout", "transformer_attribution", "--json", str(out)])
    result = json.loads(out.read_text())
    for key in ("fwd_s_per_image", "fwd_bwd_s_per_image", "floor_s_per_image"):
        assert result[key] > 0
    assert set(result["methods"]) == {"rollout", "transformer_attribution"}
    for figures in result["methods"].values():
        assert figures["s_per_image"] > 0 and figures["ratio_to_floor"] > 0 and figures["ratio_to_fwd_bwd"] > 0
        assert "peak_mem_mb" in figures


def test_unknown_clip_architecture_is_one_line():
    from baselines.cli import UserError
    with pytest.raises(UserError, match="unknown open_clip architecture 'ViT-Q-99'"):
        bench_explain.main(["--model", "clip:ViT-Q-99", "--device", "cpu"])


def test_profile_method_splits_the_phases_and_puts_the_originals_back(capsys):
    import torch

    from baselines.relevance import layers
    from scripts import profile_method
    grad, relprop = torch.autograd.grad, layers.Linear.relprop
    profile_method.main(["--model", "vit_tiny_patch16_224", "--batch-size", "1", "--calls", "1", "--device", "cpu"])
    printed = capsys.readouterr().out
    for phase in ("backward to the attention maps", "relevance pass", "rollout products", "matrix products"):
        assert phase in printed
    relevance_ms = float(printed.split("relevance pass")[1].split("ms")[0])
    assert relevance_ms > 0
    assert torch.autograd.grad is grad and layers.Linear.relprop is relprop
