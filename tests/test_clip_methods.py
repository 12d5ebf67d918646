"""Every CLIP method against a literal, per-pair, float64 re-statement of the originals' CLIP code."""
import pytest
import torch

import clip_reference as ref
from baselines.models.clip import explain_pairs
from tiny_clip import open_clip_tiny, ours_from, token_ids

DEPTH = 3


@pytest.fixture(scope="module")
def models():
    reference = open_clip_tiny(depth=DEPTH, lively=True, offset=0.3).double()
    return reference, ours_from(reference).double()


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(5)
    return torch.randn(2, 3, 64, 64, dtype=torch.float64), token_ids([5, 12])


IMAGE_CASES = [
    ("generic_attribution", {}, lambda m, im, ids, t: ref.interpret_image(m, im, ids, t)),
    ("generic_attribution", {"start_layer": 0}, lambda m, im, ids, t: ref.interpret_image(m, im, ids, t, 0)),
    ("beyond_intuition_h", {"steps": 4}, lambda m, im, ids, t: ref.generate_ours(m, im, ids, t, DEPTH - 2, 4)),
    ("beyond_intuition_t", {"steps": 3}, lambda m, im, ids, t: ref.generate_ours_c(m, im, ids, t, DEPTH - 4, 3)),
    ("beyond_intuition_t", {"steps": 2, "start_layer": 2},
     lambda m, im, ids, t: ref.generate_ours_c(m, im, ids, t, 1, 2)),
    ("attn_gradcam", {}, lambda m, im, ids, t: ref.generate_cam_attn(m, im, ids, t)),
    ("rollout", {}, lambda m, im, ids, t: ref.generate_rollout(m, im)),
    ("attn_last_layer", {}, lambda m, im, ids, t: ref.generate_raw_attention(m, im)),
    ("transformer_attribution", {"start_layer": 1},
     lambda m, im, ids, t: ref.transformer_attribution_image(m, im, ids, t, 1)),
]


@pytest.mark.parametrize("method,options,reference", IMAGE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(IMAGE_CASES)])
def test_image_side_matches_reference(models, data, method, options, reference):
    torch.set_num_threads(2)
    original, ours = models
    images, ids = data
    got = explain_pairs(ours, images, ids, method, batch_size=4, **options)
    assert got.shape == (2, 2, 4, 4)
    for i in range(images.shape[0]):
        for t in range(ids.shape[0]):
            expected = reference(original, images[i:i + 1], ids, t).detach()
            torch.testing.assert_close(got[i, t].reshape(-1), expected.reshape(-1), rtol=1e-7, atol=1e-9)


def test_text_side_transformer_attribution_through_the_causal_mask(models, data):
    """LRP through the text tower equals the per-pair reference (TE's rules through the similarity, the causal
    mask's addition to the scores by the add rule as TE's BERT does with its padding mask: the mask is 0 where
    attention is allowed, so the scores keep that relevance), and is zero past EOT."""
    torch.set_num_threads(2)
    original, ours = models
    images, ids = data
    got = explain_pairs(ours, images, ids, "transformer_attribution", side="text", batch_size=4, start_layer=1)
    for i in range(images.shape[0]):
        for t in range(ids.shape[0]):
            expected = ref.transformer_attribution_text(original, images[i:i + 1], ids, t, 1).detach()
            torch.testing.assert_close(got[i, t], expected, rtol=1e-7, atol=1e-9)
    past = torch.arange(ids.shape[1])[None, :] > ids.argmax(dim=1)[:, None]
    assert (got[:, past] == 0).all() and (got[:, ~past] != 0).any()


def test_text_side_matches_notebook(models, data):
    torch.set_num_threads(2)
    original, ours = models
    images, ids = data
    got = explain_pairs(ours, images, ids, "generic_attribution", side="text", batch_size=4)
    assert got.shape == (2, 2, ids.shape[1])
    for i in range(images.shape[0]):
        for t in range(ids.shape[0]):
            expected = ref.interpret_text(original, images[i:i + 1], ids, t).detach()
            torch.testing.assert_close(got[i, t], expected, rtol=1e-7, atol=1e-9)
    eot = ids.argmax(dim=1)
    past = torch.arange(ids.shape[1])[None, :] > eot[:, None]
    assert (got[:, past] == 0).all() and (got[:, ~past] != 0).any()
