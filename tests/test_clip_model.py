"""Our CLIP against open_clip and transformers.CLIPModel on the same weights; every checkpoint form loads."""
import pickle
import zipfile

import open_clip
import pytest
import torch
import torch.nn as nn

from baselines.models import ModelError
from baselines.models.clip import create_clip, openai_layout, read_torchscript_weights
from tiny_clip import open_clip_tiny, ours_from, token_ids


def open_clip_logits(model, images, ids):
    image, text, scale = model(images, ids)[:3]
    return scale * image @ text.t()


@pytest.fixture
def inputs():
    torch.manual_seed(3)
    return torch.randn(3, 3, 64, 64), token_ids([4, 12, 7])


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_tiny_logits_equal_open_clip(inputs, quick_gelu):
    torch.set_num_threads(2)
    reference = open_clip_tiny(quick_gelu=quick_gelu, lively=True)
    ours = ours_from(reference, quick_gelu=quick_gelu)
    images, ids = inputs
    with torch.no_grad():
        torch.testing.assert_close(ours(images, ids), open_clip_logits(reference, images, ids), rtol=0, atol=1e-4)
        torch.testing.assert_close(ours.double()(images.double(), ids),
                                   open_clip_logits(reference.double(), images.double(), ids), rtol=1e-10, atol=1e-10)


def test_vit_b_32_open_clip_state_dict_file(tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32").eval()
    torch.save(reference.state_dict(), tmp_path / "open_clip_vit_b_32.pt")
    ours = create_clip("ViT-B-32", weights=tmp_path / "open_clip_vit_b_32.pt")
    images = torch.randn(2, 3, 224, 224)
    ids = open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat", "a diagram"])
    assert torch.equal(ours.tokenizer(["a photo of a cat", "a diagram"]).ids, ids)
    with torch.no_grad():
        image, text, scale = reference(images, ids)[:3]
        torch.testing.assert_close(nn.functional.normalize(ours.encode_image(images), dim=-1), image, rtol=0, atol=1e-5)
        torch.testing.assert_close(nn.functional.normalize(ours.encode_text(ids), dim=-1), text, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours(images, ids), scale * image @ text.t(), rtol=0, atol=1e-4)


def hf_tiny(eos_token_id):
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(1)
    layers = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    config = CLIPConfig(text_config=dict(**layers, vocab_size=50, max_position_embeddings=12,
                                         eos_token_id=eos_token_id, bos_token_id=48, pad_token_id=0),
                        vision_config=dict(**layers, image_size=64, patch_size=16), projection_dim=16)
    return CLIPModel(config).eval()


@pytest.mark.parametrize("eos_token_id", [2, 49])
def test_hugging_face_folder_and_safetensors(tmp_path, inputs, eos_token_id):
    torch.set_num_threads(2)
    reference = hf_tiny(eos_token_id)
    reference.save_pretrained(tmp_path)
    images, ids = inputs
    if eos_token_id == 49:
        ids = torch.where(ids == 48, 48, ids)
        ids[:, -1] = 49
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=images).logits_per_image
        from_folder = create_clip(hf_dir=tmp_path)
        torch.testing.assert_close(from_folder(images, ids), expected, rtol=0, atol=1e-4)
        if eos_token_id == 2:
            from_file = create_clip(weights=tmp_path / "model.safetensors")
            torch.testing.assert_close(from_file(images, ids), expected, rtol=0, atol=1e-4)


def openai_torchscript(state, path):
    """A TorchScript archive holding ``state`` under OpenAI's module tree, in float16 as OpenAI ships it, with the
    extra entries of OpenAI's files."""
    root = nn.Module()
    for key, value in {**state, "input_resolution": torch.tensor(64), "context_length": torch.tensor(12),
                       "vocab_size": torch.tensor(50)}.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, nn.Module())
            module = getattr(module, name)
        module.register_buffer(leaf, value.half() if value.is_floating_point() else value)
    torch.jit.script(root).save(str(path))


def test_openai_torchscript_archive_and_plain_state_dict(tmp_path, inputs):
    """OpenAI's conventions (64-wide heads, quick-GELU) hold for this tiny model: one head per 64-wide tower."""
    torch.set_num_threads(2)
    reference = open_clip_tiny(quick_gelu=True, lively=True, heads=1)
    state = openai_layout(reference.state_dict())
    openai_torchscript(state, tmp_path / "tiny.pt")
    read = read_torchscript_weights(tmp_path / "tiny.pt")
    assert set(read) == set(state) | {"input_resolution", "context_length", "vocab_size"}
    assert all(torch.equal(read[k], v.half()) for k, v in state.items())
    torch.save(state, tmp_path / "plain.pt")
    images, ids = inputs
    with torch.no_grad():
        plain = create_clip(weights=tmp_path / "plain.pt")
        torch.testing.assert_close(plain(images, ids), open_clip_logits(reference, images, ids), rtol=0, atol=1e-4)
        reference.load_state_dict({k: v.half().float() for k, v in reference.state_dict().items()})
        archive = create_clip(weights=tmp_path / "tiny.pt")
        torch.testing.assert_close(archive(images, ids), open_clip_logits(reference, images, ids), rtol=0, atol=1e-4)


class Boom:
    def __reduce__(self):
        import os
        return os.system, ("echo should-not-run",)


def test_torchscript_reader_refuses_code(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Boom(), protocol=2))
        archive.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(ModelError, match="refused global"):
        create_clip(weights=tmp_path / "evil.pt")


def test_other_architecture_is_one_line(tmp_path):
    import timm
    torch.save(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1).state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ModelError, match="not a CLIP checkpoint") as error:
        create_clip(weights=tmp_path / "vit.pth")
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match="no config.json"):
        create_clip(hf_dir=tmp_path / "missing")
    from transformers import BertConfig
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelError, match="is a bert model, not CLIP"):
        create_clip(hf_dir=tmp_path / "bert")
