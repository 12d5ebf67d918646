"""The papers' weights behind --pretrained, no random weights by accident in the eval scripts, and explanations
computed in full precision (TF32 off inside, half-precision models refused for LRP)."""
import pytest
import timm
import torch

from baselines.eval import cli
from baselines.methods import explain
from baselines.models import CONFIGS, ModelError, create_model, pretrained_name
from tiny_models import ours_from, timm_tiny


@pytest.fixture
def downloads(monkeypatch):
    """timm.create_model with pretrained=True replaced by a recorder giving a small model's state (no network);
    the base configs shrunk to that model's."""
    names = []
    original = timm.create_model

    def fake(name, pretrained=False, **kwargs):
        if pretrained:
            names.append(name)
            return original("deit_tiny_patch16_224", num_classes=3)
        return original(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake)
    tiny = CONFIGS["deit_tiny_patch16_224"]
    monkeypatch.setattr("baselines.models.CONFIGS", {"vit_base_patch16_224": tiny, "deit_base_patch16_224": tiny})
    return names


def test_pretrained_maps_to_the_papers_weights_and_honours_tags(downloads):
    assert pretrained_name("vit_base_patch16_224") == "vit_base_patch16_224.orig_in21k_ft_in1k"
    assert pretrained_name("deit_base_patch16_224") == "deit_base_patch16_224.fb_in1k"
    assert pretrained_name("vit_base_patch16_224.augreg2_in21k_ft_in1k") == "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    model = create_model("vit_base_patch16_224", pretrained=True)
    assert downloads == ["vit_base_patch16_224.orig_in21k_ft_in1k"]
    assert model.weights_source == "timm:vit_base_patch16_224.orig_in21k_ft_in1k" and model.num_classes == 3
    create_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)
    create_model("deit_base_patch16_224", pretrained=True)
    assert downloads[1:] == ["vit_base_patch16_224.augreg2_in21k_ft_in1k", "deit_base_patch16_224.fb_in1k"]
    hooked = create_model("timm:vit_base_patch16_224", pretrained=True)
    assert downloads[3:] == ["vit_base_patch16_224.orig_in21k_ft_in1k"]
    assert hooked.weights_source == "timm:vit_base_patch16_224.orig_in21k_ft_in1k"


def test_weights_source_is_recorded(tmp_path):
    assert create_model().weights_source.endswith("synthetic_vit.pth")
    assert create_model("deit_tiny_patch16_224").weights_source == "random"
    torch.save(create_model("deit_tiny_patch16_224").state_dict(), tmp_path / "w.pth")
    assert create_model("deit_tiny_patch16_224", weights=tmp_path / "w.pth").weights_source == str(tmp_path / "w.pth")
    with pytest.raises(ModelError, match="model card with its own weights"):
        create_model("synthetic_vit", pretrained=True)


def test_eval_scripts_refuse_a_timm_name_without_weights():
    with pytest.raises(cli.InputError, match="no weights.*--pretrained \\(timm's vit_base_patch16_224.orig_in21k"
                                             ".*--random-weights"):
        cli.load_model("vit_base_patch16_224", None, "cpu")
    with pytest.raises(cli.InputError, match="no weights"):
        cli.load_model("timm:deit_tiny_patch16_224", None, "cpu")
    assert cli.load_model("deit_tiny_patch16_224", None, "cpu", random_weights=True).weights_source == "random"
    assert cli.load_model(None, None, "cpu").weights_source.endswith("synthetic_vit.pth")


def test_eval_scripts_take_pretrained_and_random_weights_flags():
    import argparse
    parser = argparse.ArgumentParser()
    cli.add_common_arguments(parser, 1)
    assert parser.parse_args(["--pretrained"]).pretrained and parser.parse_args(["--random-weights"]).random_weights
    with pytest.raises(SystemExit):
        parser.parse_args(["--pretrained", "--weights", "w.pth"])


def test_tf32_is_off_inside_explanations_and_restored_after(monkeypatch):
    model = ours_from(timm_tiny(depth=2, offset=0.5))
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    seen = []
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        seen.append((matmul.fp32_precision, conv.fp32_precision))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    try:
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        explain(model, images, "transformer_attribution")
        with pytest.raises(ValueError):
            explain(model, images, "transformer_attribution", class_index=99)
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved
    assert seen and all(s == ("ieee", "ieee") for s in seen)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_refused_for_lrp(dtype):
    model = ours_from(timm_tiny(depth=2, offset=0.5)).to(dtype)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    with pytest.raises(ValueError, match="full_lrp.*model.float\\(\\)"):
        explain(model, images, "full_lrp")
    assert explain(model.float(), images.float(), "full_lrp").dtype == torch.float32
