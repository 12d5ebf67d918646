"""Our ViT gives timm's logits on the same weights, and loads every checkpoint form."""
import pytest
import timm
import torch

from baselines.models import ModelError, create_model
from baselines.relevance.layers import recording
from tiny_models import ours_from, timm_tiny


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "vit_small_patch32_224"])
def test_logits_equal_timm(name, tmp_path, device):
    reference = timm.create_model(name).eval()
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    ours = create_model(name, weights=path, device=device)
    reference.to(device)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        expected = reference(images)
        assert (ours(images) - expected).abs().max() <= 1e-4
        with recording(ours):
            assert (ours(images) - expected).abs().max() <= 1e-4


@pytest.mark.numerics
def test_custom_config_and_final_norm_eps():
    reference = timm_tiny(depth=3)
    ours = ours_from(reference)
    assert ours.norm.eps == reference.norm.eps == 1e-6
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (ours(images) - reference(images)).abs().max() <= 1e-4


def _save_variants(tmp_path, state, patch):
    jax_style = dict(state)
    weight = state["patch_embed.proj.weight"]
    jax_style["patch_embed.proj.weight"] = weight.reshape(weight.shape[0], -1)
    paths = {"wrapped": tmp_path / "deit.pth", "jax": tmp_path / "jx.pth", "module": tmp_path / "ddp.pth"}
    torch.save({"model": state}, paths["wrapped"])
    torch.save(jax_style, paths["jax"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, paths["module"])
    from safetensors.torch import save_file
    paths["safetensors"] = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, paths["safetensors"])
    return paths


def test_checkpoint_forms_load_identically(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_patch16_224", num_classes=7).eval()
    images = torch.randn(1, 3, 224, 224)
    expected = reference(images)
    for form, path in _save_variants(tmp_path, reference.state_dict(), 16).items():
        ours = create_model("deit_tiny_patch16_224", weights=path)
        assert ours.num_classes == 7, form
        with torch.no_grad():
            assert (ours(images) - expected).abs().max() <= 1e-4, form


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    torch.manual_seed(0)
    small = timm.create_model("deit_tiny_patch16_224").state_dict()
    torch.save(small, tmp_path / "tiny.pth")
    with pytest.raises(ModelError, match="does not fit the model"):
        create_model("deit_small_patch16_224", weights=tmp_path / "tiny.pth")
    with pytest.raises(ModelError, match="not found"):
        create_model("deit_tiny_patch16_224", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        create_model("deit_tiny_patch16_224", weights=tmp_path / "junk.pth")
    with pytest.raises(ModelError, match="unknown model"):
        create_model("no_such_model")
    with pytest.raises(ModelError, match="--weights"):
        create_model("deit_tiny_patch16_224", pretrained=True)


def test_distilled_checkpoint_is_refused(tmp_path):
    state = timm.create_model("deit_tiny_patch16_224").state_dict()
    state["dist_token"] = torch.zeros(1, 1, 192)
    torch.save(state, tmp_path / "distilled.pth")
    with pytest.raises(ModelError, match="distilled"):
        create_model("deit_tiny_patch16_224", weights=tmp_path / "distilled.pth")
