"""Every method against a literal, per-sample, float64 re-statement of the originals' computations.

The originals' default start layers (1, 3, 6) are passed explicitly: on this 8-block model ours scale to the
depth (``registry.fitted_defaults``)."""
import pytest
import torch

import te_reference as ref
from baselines.methods import explain
from tiny_models import ours_from, timm_tiny


@pytest.fixture(scope="module")
def models():
    t = timm_tiny(depth=8).double()
    return t, ours_from(t).double()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64, dtype=torch.float64)


CASES = [
    ("transformer_attribution", {"start_layer": 1}, ref.transformer_attribution),
    ("transformer_attribution", {"start_layer": 0}, ref.transformer_attribution),
    ("rollout", {"start_layer": 1}, ref.rollout),
    ("rollout", {"head_fusion": "max", "discard_ratio": 0.9, "start_layer": 0}, ref.rollout),
    ("rollout", {"head_fusion": "min", "discard_ratio": 0.5, "start_layer": 1}, ref.rollout),
    ("attn_last_layer", {}, ref.attn_last_layer),
    ("attn_gradcam", {}, ref.attn_gradcam),
    ("lrp_last_layer", {}, ref.lrp_last_layer),
    ("lrp_last_layer", {"is_ablation": True}, ref.lrp_last_layer),
    ("full_lrp", {}, ref.full_lrp),
    ("generic_attribution", {}, ref.generic_attribution),
    ("generic_attribution", {"start_layer": 2}, ref.generic_attribution),
    ("grad_rollout", {}, ref.grad_rollout),
    ("grad_rollout", {"discard_ratio": 0.0}, ref.grad_rollout),
    ("beyond_intuition_h", {"steps": 5, "start_layer": 3}, ref.beyond_intuition_h),
    ("beyond_intuition_t", {"steps": 5, "start_layer": 6}, ref.beyond_intuition_t),
    ("beyond_intuition_t", {"steps": 3, "start_layer": 2}, ref.beyond_intuition_t),
]


@pytest.mark.parametrize("method,options,reference", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_method_matches_reference(models, images, method, options, reference):
    timm_model, ours = models
    got = explain(ours, images, method, **options)
    for i in range(images.shape[0]):
        expected = reference(timm_model, images[i:i + 1], **options).detach()
        torch.testing.assert_close(got[i].reshape(-1), expected.reshape(-1), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["transformer_attribution", "attn_gradcam", "generic_attribution"])
def test_explicit_class_matches_reference(models, images, method):
    timm_model, ours = models
    start = {"start_layer": 1} if method == "transformer_attribution" else {}
    got = explain(ours, images, method, class_index=3, **start)
    for i in range(images.shape[0]):
        expected = getattr(ref, method)(timm_model, images[i:i + 1], index=3, **start).detach()
        torch.testing.assert_close(got[i].reshape(-1), expected.reshape(-1), rtol=1e-7, atol=1e-9)
