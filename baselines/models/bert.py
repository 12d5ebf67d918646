"""BERT sequence classifier built from the shared relevance layers.

Module and parameter names are Hugging Face's (``bert.embeddings.word_embeddings``,
``bert.encoder.layer.{i}.attention.self.query``, ..., ``bert.pooler.dense``, ``classifier``), so HF state dicts load
strictly and the logits equal ``transformers.BertForSequenceClassification``'s: post-norm layers, the config's GELU
and LayerNorm eps, absolute positions, token types, padding masks. Inference only (no dropout).

Inputs are dicts ``{"input_ids", "attention_mask"[, "token_type_ids"]}`` of ``[B, L]`` tensors. Inside
``recording(model)`` every layer keeps its attention probabilities, input and values, and ``relprop`` follows TE's
BERT relprop; the embeddings are not relprop'd (as in TE), so full LRP stops at the encoder input.
"""
from pathlib import Path

import torch
import torch.nn as nn

from baselines.cli import UserError
from baselines.methods.interface import LayerModel
from baselines.relevance import layers as rl

from .vit import ModelError, load_weights, read_checkpoint

ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
"""HF ``hidden_act`` names we support -> ``torch.nn.GELU(approximate=...)``."""


class Embeddings(nn.Module):
    """Word + token type + absolute position embeddings, LayerNorm (HF ``BertEmbeddings``)."""

    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = rl.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(positions))


class SelfAttention(nn.Module):
    """Query, key, value projections and the attention core (HF ``attention.self``); ``Clone`` feeds q, k, v."""

    def __init__(self, c):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.clone = rl.Clone()
        self.query = rl.Linear(c.hidden_size, c.hidden_size)
        self.key = rl.Linear(c.hidden_size, c.hidden_size)
        self.value = rl.Linear(c.hidden_size, c.hidden_size)
        self.core = rl.AttentionCore(self.head_dim ** -0.5)

    def split(self, x):
        """``[B, L, H * d]`` -> ``[B, H, L, d]``."""
        return x.view(*x.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    @staticmethod
    def merge(x):
        """``[B, H, L, d]`` -> ``[B, L, H * d]``."""
        return x.transpose(1, 2).flatten(2)

    def forward(self, x, mask):
        x = self.clone(x)
        q, k, v = (self.split(layer(x)) for layer in (self.query, self.key, self.value))
        return self.merge(self.core(q, k, v, mask))

    def relprop(self, R, composite, stop_at_attention=False):
        R_qkv = self.core.relprop(self.split(R), composite, stop_at_attention)
        if stop_at_attention:
            return None
        parts = [layer.relprop(self.merge(r), composite) for layer, r in zip((self.query, self.key, self.value), R_qkv)]
        return self.clone.relprop(parts, composite)


class ResidualOutput(nn.Module):
    """``LayerNorm(dense(h) + residual)`` (HF ``attention.output`` and ``output``)."""

    def __init__(self, in_dim, out_dim, eps):
        super().__init__()
        self.dense = rl.Linear(in_dim, out_dim)
        self.add = rl.Add()
        self.LayerNorm = rl.LayerNorm(out_dim, eps=eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.add(self.dense(h), residual))

    def relprop(self, R, composite):
        """Returns ``(R_h, R_residual)``."""
        R_dense, R_residual = self.add.relprop(self.LayerNorm.relprop(R, composite), composite)
        return self.dense.relprop(R_dense, composite), R_residual


class Attention(nn.Module):
    """Self-attention with its residual output (HF ``BertAttention``); ``Clone`` feeds the attention and the skip."""

    def __init__(self, c):
        super().__init__()
        self.clone = rl.Clone()
        self.self = SelfAttention(c)
        self.output = ResidualOutput(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x, mask):
        x = self.clone(x)
        return self.output(self.self(x, mask), x)

    def value_projection(self):
        """``v W_o^T`` (heads concatenated, no bias) of the recorded forward: Beyond Intuition's token-wise term."""
        return SelfAttention.merge(self.self.core.saved["v"]) @ self.output.dense.weight.t()

    def relprop(self, R, composite, stop_at_attention=False):
        R_attn, R_skip = self.output.relprop(R, composite)
        R_attn = self.self.relprop(R_attn, composite, stop_at_attention)
        if stop_at_attention:
            return None
        return self.clone.relprop([R_attn, R_skip], composite)


class Intermediate(nn.Module):
    """``act(dense(x))`` (HF ``intermediate``); the activation passes relevance unchanged."""

    def __init__(self, c):
        super().__init__()
        self.dense = rl.Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = rl.GELU(approximate=ACTIVATIONS[c.hidden_act])

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))

    def relprop(self, R, composite):
        return self.dense.relprop(self.intermediate_act_fn.relprop(R, composite), composite)


class Layer(nn.Module):
    """Post-norm encoder layer (HF ``BertLayer``): attention block, then ``LayerNorm(ffn(a) + a)``."""

    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.clone = rl.Clone()
        self.intermediate = Intermediate(c)
        self.output = ResidualOutput(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    @property
    def attn(self):
        """The attention block (the name the methods use for every model)."""
        return self.attention

    @property
    def input(self):
        """The layer's input of the recorded forward (Beyond Intuition's ``z``)."""
        return self.attention.clone.saved["x"]

    def forward(self, x, mask):
        a = self.clone(self.attention(x, mask))
        return self.output(self.intermediate(a), a)

    def relprop(self, R, composite, stop_at_attention=False):
        R_ffn, R_skip = self.output.relprop(R, composite)
        R = self.clone.relprop([self.intermediate.relprop(R_ffn, composite), R_skip], composite)
        return self.attention.relprop(R, composite, stop_at_attention)


class Encoder(nn.Module):
    """The stack of layers (HF ``encoder.layer``)."""

    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class Pooler(nn.Module):
    """``tanh(dense(x[:, 0]))`` (HF ``pooler``)."""

    def __init__(self, c):
        super().__init__()
        self.pool = rl.TokenSelect(0)
        self.dense = rl.Linear(c.hidden_size, c.hidden_size)
        self.activation = rl.Tanh()

    def forward(self, x):
        return self.activation(self.dense(self.pool(x)))

    def relprop(self, R, composite):
        R = self.dense.relprop(self.activation.relprop(R, composite), composite)
        return self.pool.relprop(R, composite)


class BertBody(nn.Module):
    """Embeddings, encoder and pooler (HF ``BertModel``, the ``bert.`` prefix)."""

    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.pooler = Pooler(c)


def check_vocabulary(tokenizer, source):
    """A tokenizer that knows only its special tokens (what ``AutoTokenizer`` builds from a model folder without
    tokenizer files) would turn every word into ``[UNK]``: a ``ModelError`` instead."""
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise ModelError(f"{source} has no tokenizer vocabulary (only {len(tokenizer)} special tokens): copy the "
                         "tokenizer files (vocab.txt or tokenizer.json) into it")
    return tokenizer


def text_classifier_defaults(depth):
    """Each method's options that follow the original BERT code, for a text classifier of ``depth`` layers
    (see ``BertClassifier``; also used for Hugging Face encoders wrapped through hooks)."""
    last = depth - 1
    zero = {"cls_entry": "zero"}
    return {
        "transformer_attribution": {"start_layer": last, "row_normalize": True, "cls_entry": "min"},
        "rollout": {"start_layer": 0, **zero},
        "attn_last_layer": zero,
        "attn_gradcam": {"gradcam_weights": "matrix", **zero},
        "lrp_last_layer": zero,
        "full_lrp": zero,
        "generic_attribution": {"start_layer": last, **zero},
        "grad_rollout": zero,
        "beyond_intuition_h": {"start_layer": last, **zero},
        "beyond_intuition_t": {"start_layer": max(last - 3, 0), "absolute": False, **zero},
    }


class BertClassifier(LayerModel, nn.Module):
    """BERT sequence classifier (HF ``BertForSequenceClassification``) with relevance propagation.

    ``method_defaults`` gives each method the conventions of the original BERT code (TE ``ExplanationGenerator``,
    TI's BERT additions); a value passed to ``explain`` overrides them:

    * ``transformer_attribution``: last layer only (TE default ``start_layer=11`` of 12), ``(A + I)`` rows
      normalised, ``[CLS]`` entry = the row's min (TE HEAD; TI and TE before July 2022 zeroed it). Conservative
      rules (TE's ``layers_ours`` model; TI ran it on the ``layers_lrp`` model).
    * ``rollout``: every layer (``start_layer=0``); ``attn_last_layer``, ``lrp_last_layer``, ``full_lrp``: as TE.
    * ``attn_gradcam``: head weights = gradient mean over the whole matrix (TE BERT).
    * ``generic_attribution``: last layer only, clamp then head mean (TI's BERT ``generate_genattr``).
    * ``beyond_intuition_h``: last layer only; ``beyond_intuition_t``: last 4 layers, no absolute value (TI BERT).
    * ``grad_rollout`` (no BERT original): its ViT defaults.
    * every method but ``transformer_attribution``: ``[CLS]`` entry zeroed (``R[:, 0, 0] = 0`` in TE and TI).
    """

    image_tokens = slice(None)
    """Every column of the [CLS] row is a token score."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.bert = BertBody(config)
        self.classifier = rl.Linear(config.hidden_size, config.num_labels)
        self.head_trained = True

    num_classes = property(lambda self: self.config.num_labels)

    @property
    def class_names(self):
        """Label names from the config's ``id2label``."""
        return tuple(self.config.id2label[i] for i in range(self.num_classes))

    @property
    def blocks(self):
        return self.bert.encoder.layer

    @property
    def attention_cores(self):
        return [layer.attention.self.core for layer in self.blocks]

    @property
    def input_embedding(self):
        """The word embeddings: ``attnlrp`` / ``cp_lrp`` explain their output (as LXT's BERT example)."""
        return self.bert.embeddings.word_embeddings

    @property
    def method_defaults(self):
        return text_classifier_defaults(len(self.blocks))

    def forward(self, inputs, input_scale=None):
        """Logits ``[B, num_labels]``; ``input_scale`` ``[B]`` multiplies the embedding output (TI's
        integrated-gradient path). Texts longer than the model's position embeddings are a one-line error."""
        ids = inputs["input_ids"]
        if ids.shape[1] > self.config.max_position_embeddings:
            raise UserError(f"texts of {ids.shape[1]} tokens exceed this model's {self.config.max_position_embeddings}"
                            " positions: lower max_length")
        types = inputs.get("token_type_ids")
        x = self.bert.embeddings(ids, torch.zeros_like(ids) if types is None else types)
        if input_scale is not None:
            x = x * input_scale.view(-1, 1, 1).to(x.dtype)
        mask = self._additive_mask(inputs.get("attention_mask"), ids, x.dtype)
        for layer in self.blocks:
            x = layer(x, mask)
        return self.classifier(self.bert.pooler(x))

    @staticmethod
    def _additive_mask(attention_mask, ids, dtype):
        """``[B, 1, 1, L]``: 0 for tokens, the dtype's min for padding (HF's extended mask; TE always adds it)."""
        keep = torch.ones_like(ids) if attention_mask is None else attention_mask
        return (1.0 - keep[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def valid_tokens(self, inputs):
        """``[B, L]`` bool: the tokens that are not padding."""
        mask = inputs.get("attention_mask")
        return None if mask is None else mask.bool()

    def relprop(self, R, composite, down_to_block=0, to_input=False):
        """Relevance of the logits ``R`` ``[B, num_labels]`` sent back through classifier, pooler and layers.

        Stops at the attention of layer ``down_to_block`` (each reached layer keeps ``attn_relevance``), or, with
        ``to_input``, returns the relevance at the encoder input summed over the hidden size, ``[B, L]``.
        """
        R = self.bert.pooler.relprop(self.classifier.relprop(R, composite), composite)
        for index in range(len(self.blocks) - 1, down_to_block - 1, -1):
            stop = index == down_to_block and not to_input
            R = self.blocks[index].relprop(R, composite, stop_at_attention=stop)
        return R.sum(dim=-1) if to_input else None

    def token_map(self, row):
        """The [CLS] row over all tokens, unchanged (``[B, L]``, [CLS] and [SEP] included)."""
        return row


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _read_config(source):
    """A ``BertConfig`` from a folder or hub name, checked for what this model covers."""
    from transformers import AutoConfig
    text = str(source)
    if not Path(source).exists() and (Path(source).is_absolute() or text.startswith(".") or text.count("/") > 1):
        raise ModelError(f"model folder not found: {source}")
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as error:
        raise _load_error(source, error) from None
    if config.model_type != "bert":
        raise ModelError(f"'{source}' is a {config.model_type} model, not BERT")
    if config.hidden_act not in ACTIVATIONS or getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ModelError(f"'{source}': hidden_act {config.hidden_act!r} / position_embedding_type "
                         f"{config.position_embedding_type!r} not supported (gelu, gelu_new; absolute)")
    return config


def _load_error(source, error):
    where = "model folder" if Path(source).exists() else "Hugging Face hub name"
    return ModelError(f"cannot load BERT {where} '{source}' ({str(error).splitlines()[0][:160]}); pass a local "
                      f"folder with config.json and {' or '.join(WEIGHT_FILES)}")


def _read_weights(source):
    """The state dict of a folder's (or, through transformers, a hub model's) weight file."""
    if Path(source).is_dir():
        for name in WEIGHT_FILES:
            if (Path(source) / name).is_file():
                return read_checkpoint(Path(source) / name)
        raise ModelError(f"model folder '{source}' has no {' or '.join(WEIGHT_FILES)}")
    from transformers.utils import cached_file
    for name in WEIGHT_FILES:
        try:
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except Exception as error:
            raise _load_error(source, error) from None
        if path:
            return read_checkpoint(path)
    raise _load_error(source, FileNotFoundError(f"no {' or '.join(WEIGHT_FILES)}"))


def hf_state_dict(state):
    """HF ``BertForSequenceClassification`` keys from any BERT checkpoint: a bare ``BertModel`` gets the ``bert.``
    prefix; position-id buffers, pretraining heads (``cls.``) and TF-style ``gamma``/``beta`` names are mapped."""
    bare = not any(k.startswith("bert.") for k in state)
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids") or key.endswith("token_type_ids") or key.startswith("cls."):
            continue
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[f"bert.{key}" if bare and not key.startswith("classifier.") else key] = value
    return out


def create_bert(model_dir_or_name, num_labels=None, device="cpu", weights=None):
    """A BERT classifier in eval mode.

    ``model_dir_or_name``: a Hugging Face BERT folder (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``; a ``BertForSequenceClassification`` or a bare ``BertModel``) or a hub name (loaded
    through transformers; offline that fails with a ``ModelError``). ``weights``: a checkpoint file whose state dict
    replaces the folder's (e.g. TE's fine-tuned ERASER ``classifier.pt``). Without a ``classifier`` in the weights, a
    fresh head of ``num_labels`` (default: the config's) is drawn (normal, std ``initializer_range``, seed 0) and
    ``model.head_trained`` is False.
    """
    config = _read_config(model_dir_or_name)
    state = hf_state_dict(read_checkpoint(weights) if weights else _read_weights(model_dir_or_name))
    head = state.get("classifier.weight")
    if head is not None and num_labels is not None and head.shape[0] != num_labels:
        raise ModelError(f"the checkpoint's classifier has {head.shape[0]} labels, not {num_labels}")
    labels = head.shape[0] if head is not None else num_labels or config.num_labels
    if labels != config.num_labels:
        config.num_labels = labels
    model = BertClassifier(config)
    if head is None:
        generator = torch.Generator().manual_seed(0)
        state["classifier.weight"] = torch.randn(labels, config.hidden_size, generator=generator) \
            * config.initializer_range
        state["classifier.bias"] = torch.zeros(labels)
        model.head_trained = False
    load_weights(model, state)
    return model.eval().to(device)


__all__ = ["BertClassifier", "create_bert", "hf_state_dict", "text_classifier_defaults"]
