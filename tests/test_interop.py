"""Our methods in other tools' conventions: Captum-shaped maps from ``Explainer`` and a Quantus ``explain_func``
(every method and model), shown working with two Quantus faithfulness metrics."""
import numpy as np
import pytest
import quantus
import timm
import torch
import torch.nn.functional as F

from baselines.methods import Explainer, explain, supported_methods
from baselines.methods.interop import quantus_explain_func
from baselines.models.hooked import hook_model
from tiny_bert import hf_tiny
from tiny_models import ours_from, timm_tiny

FAST = {"beyond_intuition_h": {"steps": 2}, "beyond_intuition_t": {"steps": 2}}


pytestmark = pytest.mark.usefixtures("one_thread")


def models():
    """Our ViT copy (64-pixel images), a hooked timm distilled DeiT (32 pixels), a hooked Hugging Face BERT."""
    ours = ours_from(timm_tiny(depth=2, offset=0.3))
    distilled = hook_model(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32,
                                             depth=2, num_classes=4).eval())
    bert = hook_model(hf_tiny(layers=2))
    return {"ours": (ours, np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)),
            "distilled": (distilled, np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)),
            "bert": (bert, np.array([[1, 5, 7, 9, 3], [1, 4, 6, 0, 0]]))}


@pytest.mark.parametrize("name", ["ours", "distilled", "bert"])
def test_explain_func_runs_every_method_with_input_shaped_maps(name):
    model, inputs = models()[name]
    targets = np.array([1, 2])
    for method in supported_methods(model):
        maps = quantus_explain_func(model, inputs, targets, method=method, **FAST.get(method, {}))
        expected = (2, 1, *inputs.shape[-2:]) if inputs.ndim == 4 else inputs.shape
        assert maps.shape == expected and maps.dtype == np.float32 and np.isfinite(maps).all(), method
    batch = torch.as_tensor(inputs)
    if name == "bert":
        batch = {"input_ids": batch, "attention_mask": (batch != 0).long()}
    raw = explain(model, batch, "generic_attribution", class_index=torch.tensor([1, 2]))
    shaped = Explainer(model, "generic_attribution", input_shaped=True).attribute(batch, target=torch.tensor([1, 2]))
    maps = quantus_explain_func(model, inputs, targets)
    if name == "bert":
        assert torch.equal(shaped, raw) and np.array_equal(maps, raw.numpy())
    else:
        upsampled = F.interpolate(raw[:, None], size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        assert torch.equal(shaped, upsampled) and np.array_equal(maps, upsampled.numpy())


@pytest.mark.parametrize("name", ["ours", "distilled"])
def test_two_quantus_faithfulness_metrics_take_our_explain_func(name):
    model, images = models()[name]
    with torch.no_grad():
        labels = model(torch.as_tensor(images)).argmax(-1).numpy()
    side = images.shape[-1]
    kwargs = {"method": "generic_attribution"}
    flipping = quantus.PixelFlipping(features_in_step=side * side // 8, perturb_baseline="black",
                                     disable_warnings=True)
    curves = flipping(model, images, labels, explain_func=quantus_explain_func, explain_func_kwargs=kwargs,
                      device="cpu")
    steps = images[0].size // (side * side // 8)
    # Quantus flips each channel of a pixel separately: C * H * W / features_in_step points per curve.
    assert len(curves) == 2 and all(len(curve) == steps and np.isfinite(curve).all() for curve in curves)
    correlation = quantus.FaithfulnessCorrelation(nr_runs=5, subset_size=side, perturb_baseline="black",
                                                  return_aggregate=False, disable_warnings=True)
    scores = correlation(model, images, labels, explain_func=quantus_explain_func, explain_func_kwargs=kwargs,
                         device="cpu")
    assert len(scores) == 2 and np.isfinite(scores).all() and all(-1 <= s <= 1 for s in scores)
