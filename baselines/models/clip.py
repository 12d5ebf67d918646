"""CLIP (OpenAI CLIP, open_clip, Hugging Face ``CLIPModel``) built from the shared relevance layers.

Two towers of the ViT's pre-norm ``Block`` (LayerNorm eps 1e-5, quick-GELU or GELU):

* image: ``x = ln_pre([class_embedding; conv1(image) patches] + positional_embedding)``, blocks,
  ``e = proj(ln_post(x[:, 0]))``;
* text: ``x = token_embedding(ids) + positional_embedding`` with a causal mask, blocks,
  ``e = proj(ln_final(x)[b, eot_b])``, ``eot_b`` = ``argmax(ids_b)`` (OpenAI / open_clip tokenisation) or the first
  position of the EOS id (Hugging Face);
* ``logits_per_image = exp(logit_scale) * norm(e_image) @ norm(e_text)^T``.

The methods of the registry explain one tower at a time through ``ImageSide`` / ``TextSide``: the tower followed by
the cosine similarity with fixed embeddings of the other side, whose "logits" are one row of ``logits_per_image``
(image side) or ``logits_per_text`` (text side). The gradient of ``logits_per_image[i, t]`` with respect to the
image tower's attention maps is the same whether or not the text tower is part of the graph, so explaining the pair
(image ``i``, text ``t``) as class ``t`` of the image side is the generic-attention paper's CLIP notebook
("image repeated per text, one-hot on the diagonal"). LRP passes the similarity as a linear layer with weights
``exp(logit_scale) * norm(e_other)`` and the L2 normalisation as the identity (as LayerNorm).

Checkpoints load strictly from every published form (see ``create_clip``); the OpenAI TorchScript archive is read
without executing any of its code (``read_torchscript_weights``).
"""
import collections
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.cli import UserError

from baselines.methods.interface import LayerModel
from baselines.relevance import layers as rl

from .cards import card_config, read_card
from .vit import Block, ModelError, load_weights, read_checkpoint

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_VOCABULARY = 49408
ZERO_SHOT_PROMPT = "a photo of a {}"
"""Beyond Intuition's zero-shot prompt."""


@dataclass(frozen=True)
class CLIPConfig:
    """Architecture, tokenisation and preprocessing of one CLIP (defaults: OpenAI ViT-B/32)."""
    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    mlp_ratio: float = 4.0
    quick_gelu: bool = True
    eps: float = 1e-5
    eot_token_id: Optional[int] = None
    """None: the explained text token is ``argmax(ids)`` (OpenAI / open_clip); else the first position of this id."""
    mean: tuple = OPENAI_MEAN
    std: tuple = OPENAI_STD
    class_names: tuple = field(default=(), compare=False)


def _blocks(width, depth, heads, c):
    act = rl.QuickGELU if c.quick_gelu else rl.GELU
    return nn.ModuleList(Block(width, heads, c.mlp_ratio, True, eps=c.eps, act_layer=act) for _ in range(depth))


def _relprop_blocks(blocks, R, composite, down_to_block, to_input):
    for index in range(len(blocks) - 1, down_to_block - 1, -1):
        R = blocks[index].relprop(R, composite, stop_at_attention=index == down_to_block and not to_input)
    return R


class VisionTower(nn.Module):
    """The image tower: ``[B, 3, H, W]`` normalised images -> embeddings ``[B, embed_dim]``."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.grid = (c.image_size // c.patch_size,) * 2
        self.conv1 = rl.PatchConv(3, c.vision_width, kernel_size=c.patch_size, stride=c.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(c.vision_width))
        self.positional_embedding = nn.Parameter(torch.zeros(self.grid[0] * self.grid[1] + 1, c.vision_width))
        self.add_pos = rl.Add()
        self.ln_pre = rl.LayerNorm(c.vision_width, eps=c.eps)
        self.blocks = _blocks(c.vision_width, c.vision_layers, c.vision_heads, c)
        self.ln_post = rl.LayerNorm(c.vision_width, eps=c.eps)
        self.pool = rl.TokenSelect(0)
        self.proj = rl.Linear(c.vision_width, c.embed_dim, bias=False)

    def forward(self, images, input_scale=None):
        """``input_scale`` ``[B]`` multiplies the normalised images (Beyond Intuition's integrated-gradient path)."""
        if input_scale is not None:
            images = images * input_scale.view(-1, 1, 1, 1).to(images.dtype)
        x = self.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.ln_pre(self.add_pos(x, self.positional_embedding.expand(x.shape[0], -1, -1)))
        for block in self.blocks:
            x = block(x)
        return self.proj(self.ln_post(self.pool(x)))

    def relprop(self, R, composite, down_to_block=0, to_input=False):
        """Relevance of the embedding ``[B, embed_dim]`` back to block ``down_to_block``'s attention, or with
        ``to_input`` to the pixels (``[B, H, W]``, summed over colour channels; z^B rule at ``conv1``)."""
        R = self.pool.relprop(self.ln_post.relprop(self.proj.relprop(R, composite), composite), composite)
        R = _relprop_blocks(self.blocks, R, composite, down_to_block, to_input)
        if not to_input:
            return None
        R_tokens, _ = self.add_pos.relprop(self.ln_pre.relprop(R, composite), composite)
        B, N, C = R_tokens.shape
        patches = R_tokens[:, 1:].transpose(1, 2).reshape(B, C, *self.grid)
        return self.conv1.relprop(patches, composite).sum(dim=1)


class TextTower(nn.Module):
    """The text tower: token ids ``[B, L]`` (``L <= context_length``) -> embeddings ``[B, embed_dim]``."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.eot_token_id = c.eot_token_id
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(c.context_length, c.text_width))
        self.add_pos = rl.Add()
        self.blocks = _blocks(c.text_width, c.text_layers, c.text_heads, c)
        self.ln_final = rl.LayerNorm(c.text_width, eps=c.eps)
        self.pool = rl.TokenSelect()
        self.proj = rl.Linear(c.text_width, c.embed_dim, bias=False)

    def eot_positions(self, ids):
        """``[B]``: the position of each text's EOT token, the row its explanation reads."""
        if self.eot_token_id is None:
            return ids.argmax(dim=-1)
        return (ids == self.eot_token_id).int().argmax(dim=-1)

    def forward(self, ids, input_scale=None):
        """``input_scale`` ``[B]`` multiplies the token embeddings before the positions are added (TI's CLIP
        ``text_scale``)."""
        x = self.token_embedding(ids)
        if input_scale is not None:
            x = x * input_scale.view(-1, 1, 1).to(x.dtype)
        length = ids.shape[1]
        x = self.add_pos(x, self.positional_embedding[:length].to(x.dtype).expand(x.shape[0], -1, -1))
        mask = torch.full((length, length), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).triu(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.proj(self.pool(self.ln_final(x), self.eot_positions(ids)))

    def relprop(self, R, composite, down_to_block=0, to_input=False):
        """Relevance of the embedding back to block ``down_to_block``'s attention, or with ``to_input`` to the
        token embeddings (``[B, L]``, summed over the width)."""
        R = self.ln_final.relprop(self.pool.relprop(self.proj.relprop(R, composite), composite), composite)
        R = _relprop_blocks(self.blocks, R, composite, down_to_block, to_input)
        if not to_input:
            return None
        return self.add_pos.relprop(R, composite)[0].sum(dim=-1)


class CLIP(nn.Module):
    """Both towers and ``logit_scale``; parameter names are ours (``load_clip_state`` maps every checkpoint form).
    ``tokenizer`` turns strings into the text tower's ids (see ``tokenizers``)."""

    def __init__(self, config: CLIPConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.visual = VisionTower(config)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    mean = property(lambda self: self.config.mean)
    std = property(lambda self: self.config.std)
    img_size = property(lambda self: self.config.image_size)
    patch_size = property(lambda self: self.config.patch_size)

    def encode_image(self, images):
        return self.visual(images)

    def encode_text(self, ids):
        return self.text(ids)

    def forward(self, images, ids):
        """``logits_per_image`` ``[num_images, num_texts]`` (``logits_per_text`` is its transpose)."""
        return similarity_logits(self.logit_scale, self.encode_image(images), self.encode_text(ids))

    def zero_shot(self, class_names=None, template=ZERO_SHOT_PROMPT):
        """A zero-shot image classifier (``ImageSide``) over ``template.format(name)`` for each class name (default:
        the card's classes, else ImageNet's, open_clip's list), with the ViT's attributes (``img_size``, ``mean``,
        ...), so the ViT benchmark scripts and CLI run on it."""
        if class_names is None:
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
            class_names = self.config.class_names or IMAGENET_CLASSNAMES
        device = self.logit_scale.device
        with torch.no_grad():
            texts = self.encode_text(self.tokenizer([template.format(n) for n in class_names]).ids.to(device))
        return ImageSide(self, texts, tuple(class_names))

    def image_side(self, text_embeddings):
        """The image tower as a classifier over ``text_embeddings`` ``[T, embed_dim]``."""
        return ImageSide(self, text_embeddings)

    def text_side(self, image_embeddings):
        """The text tower as a classifier over ``image_embeddings`` ``[I, embed_dim]``."""
        return TextSide(self, image_embeddings)


def similarity_logits(logit_scale, a, b):
    """``exp(logit_scale) * norm(a) @ norm(b)^T``."""
    return logit_scale.exp() * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()


class _Side(LayerModel, nn.Module):
    """One tower followed by the cosine similarity with fixed embeddings of the other side:
    ``logits = norm(tower(x)) @ W^T``, ``W = exp(logit_scale) * norm(others)`` (``[C, embed_dim]``, frozen)."""

    def __init__(self, clip, tower, others):
        super().__init__()
        self.tower = tower
        self.normalize = rl.L2Normalize()
        self.head = rl.Linear(others.shape[1], others.shape[0], bias=False).to(others.device, others.dtype)
        weight = (clip.logit_scale.exp() * F.normalize(others, dim=-1)).detach()
        self.head.weight = nn.Parameter(weight, requires_grad=False)

    blocks = property(lambda self: self.tower.blocks)
    num_classes = property(lambda self: self.head.out_features)

    @property
    def attention_cores(self):
        return [block.attn.core for block in self.blocks]

    def forward(self, inputs, input_scale=None):
        return self.head(self.normalize(self.tower(inputs, input_scale)))

    def relprop(self, R, composite, down_to_block=0, to_input=False):
        R = self.normalize.relprop(self.head.relprop(R, composite), composite)
        return self.tower.relprop(R, composite, down_to_block, to_input)

    @property
    def method_defaults(self):
        """The CLIP code of the originals: the generic-attention notebook's ``interpret`` (``start_layer=-1``:
        last block only) and Beyond Intuition's ``Interpretor`` (``ours``: ``num_layers=10``, i.e. the last
        block; ``ours_c``: ``num_layers=8``, the last three, no absolute value; ``rollout`` from block 0)."""
        depth = len(self.blocks)
        return {"generic_attribution": {"start_layer": depth - 1},
                "beyond_intuition_h": {"start_layer": depth - 1},
                "beyond_intuition_t": {"start_layer": max(depth - 3, 0), "absolute": False},
                "rollout": {"start_layer": 0}}


class ImageSide(_Side):
    """The image tower of ``clip`` with ``logits = logits_per_image`` against ``text_embeddings``.

    ``values_after_attention`` (default True) reproduces Beyond Intuition's CLIP ``ours_c``: its ``vproj`` is
    ``v W_o^T`` of ``ln_1(x + attn(ln_1(x)))``, the block's residual stream *after* the attention update, not the
    attention's own input (its ViT and BERT code use the input; set False for that)."""

    image_tokens = slice(1, None)
    values_after_attention = True

    def __init__(self, clip, text_embeddings, class_names=()):
        super().__init__(clip, clip.visual, text_embeddings)
        self.grid = clip.visual.grid
        self.img_size, self.patch_size, self.mean, self.std = clip.img_size, clip.patch_size, clip.mean, clip.std
        self.class_names = class_names

    def value_terms(self, index):
        if not self.values_after_attention:
            return super().value_terms(index)
        block = self.blocks[index]
        middle = block.clone2.saved["x"]
        width = middle.shape[-1]
        qkv = block.attn.qkv
        values = F.linear(block.norm1(middle), qkv.weight[2 * width:], qkv.bias[2 * width:])
        return block.input, values @ block.attn.proj.weight.t()

    def token_map(self, row):
        """The class-token row -> the patch map ``[B, grid_h, grid_w]``."""
        return row[:, 1:].reshape(row.shape[0], *self.grid)


class TextSide(_Side):
    """The text tower of ``clip`` with ``logits = logits_per_text`` against ``image_embeddings``; each text's
    explained row is its EOT token."""

    image_tokens = slice(None)

    def __init__(self, clip, image_embeddings):
        super().__init__(clip, clip.text, image_embeddings)

    @property
    def input_embedding(self):
        """The token embeddings: ``attnlrp`` / ``cp_lrp`` explain their output."""
        return self.tower.token_embedding

    def query_rows(self, ids):
        return self.tower.eot_positions(ids)

    def valid_tokens(self, ids):
        """Tokens up to and including EOT."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return positions[None, :] <= self.query_rows(ids)[:, None]

    def token_map(self, row):
        """The EOT row over the tokens ``[B, L]``, unchanged: the causal mask already makes every method's entries
        past EOT exactly zero."""
        return row


def explain_pairs(clip, images, ids, method, side="image", batch_size=8, progress=None, **options):
    """Explanations of every (image, text) pair, ``images`` ``[I, 3, H, W]``, ``ids`` ``[T, L]``.

    ``side="image"``: ``[I, T, grid_h, grid_w]`` (``[I, T, H, W]`` for ``full_lrp``): image ``i`` explained as
    class ``t`` of ``clip.image_side(text embeddings)``. ``side="text"``: ``[I, T, L]``: text ``t`` explained as class
    ``i`` of ``clip.text_side(image embeddings)``, zero past each EOT. Pairs run ``batch_size`` at a time.
    """
    from baselines.methods.registry import explain
    with torch.no_grad():
        image_embeddings, text_embeddings = clip.encode_image(images), clip.encode_text(ids)
    count_i, count_t = images.shape[0], ids.shape[0]
    if side == "image":
        model = clip.image_side(text_embeddings)
        inputs, targets = images.repeat_interleave(count_t, dim=0), torch.arange(count_t).repeat(count_i)
    else:
        model = clip.text_side(image_embeddings)
        inputs, targets = ids.repeat(count_i, 1), torch.arange(count_i).repeat_interleave(count_t)
    targets = targets.to(images.device)
    results = []
    for start in range(0, inputs.shape[0], batch_size):
        chunk = slice(start, start + batch_size)
        results.append(explain(model, inputs[chunk], method, class_index=targets[chunk], **options).detach())
        if progress is not None:
            progress.update(results[-1].shape[0])
    result = torch.cat(results)
    return result.view(count_i, count_t, *result.shape[1:])


# --- tokenizers ------------------------------------------------------------------------------------------------


@dataclass
class Tokens:
    """Tokenised texts: ``ids`` ``[T, context_length]``, per text its token strings (up to EOT) and whether it was
    cut to fit the context."""
    ids: torch.Tensor
    tokens: list
    truncated: list


class OpenAITokenizer:
    """OpenAI's byte-pair tokenizer (open_clip's copy of it): ``<start> tokens <end>``, zero padding; a text too
    long for the context keeps its first ``context_length - 2`` tokens."""

    def __init__(self, context_length=77, vocab_size=OPENAI_VOCABULARY):
        from open_clip.tokenizer import SimpleTokenizer
        self.bpe = SimpleTokenizer(context_length=context_length)
        self.context_length, self.vocab_size = context_length, vocab_size

    def __call__(self, texts):
        if self.vocab_size < OPENAI_VOCABULARY:
            raise ValueError(f"this CLIP's vocabulary has {self.vocab_size} tokens, not OpenAI's {OPENAI_VOCABULARY}: "
                             "load it through its model card (--model CARD.json), which names its tokenizer")
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        tokens, truncated = [], []
        for row, text in enumerate(_checked(texts)):
            pieces = self.bpe.encode(text)
            truncated.append(len(pieces) + 2 > self.context_length)
            pieces = [self.bpe.sot_token_id] + pieces[:self.context_length - 2] + [self.bpe.eot_token_id]
            ids[row, :len(pieces)] = torch.tensor(pieces)
            tokens.append(["<start>"] + [self.bpe.decoder[p].replace("</w>", "") for p in pieces[1:-1]] + ["<end>"])
        return Tokens(ids, tokens, truncated)


class HFTokenizer:
    """A Hugging Face CLIP tokenizer from a model folder (``vocab.json`` + ``merges.txt`` / ``tokenizer.json``)."""

    def __init__(self, folder, context_length):
        from transformers import AutoTokenizer
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
        except Exception as error:
            raise ModelError(f"no tokenizer in {folder} ({str(error).splitlines()[0][:120]})") from None
        self.context_length = context_length

    def __call__(self, texts):
        full = self.tokenizer(list(_checked(texts)))["input_ids"]
        cut = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length)
        ids = torch.tensor(cut["input_ids"])
        tokens = [self.tokenizer.convert_ids_to_tokens(row[:min(len(f), self.context_length)])
                  for f, row in zip(full, cut["input_ids"])]
        return Tokens(ids, tokens, [len(f) > self.context_length for f in full])


class WordTokenizer:
    """Whole lower-case words of a fixed vocabulary (the shipped tiny CLIP): ``vocabulary[0]`` = padding, then
    ``<unk>``, the words, ``<start>`` and ``<end>`` last (so that ``argmax(ids)`` is the EOT token)."""

    def __init__(self, vocabulary, context_length):
        self.vocabulary = list(vocabulary)
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.context_length = context_length

    def __call__(self, texts):
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        tokens, truncated = [], []
        for row, text in enumerate(_checked(texts)):
            words = re.findall(r"[a-z]+", text.lower())
            truncated.append(len(words) + 2 > self.context_length)
            words = ["<start>"] + words[:self.context_length - 2] + ["<end>"]
            ids[row, :len(words)] = torch.tensor([self.index.get(w, 1) for w in words])
            tokens.append([w if w in self.index else f"{w}(<unk>)" for w in words])
        return Tokens(ids, tokens, truncated)


def _checked(texts):
    for text in texts:
        if not text.strip():
            raise UserError("empty text: every --text needs at least one word")
    return texts


# --- checkpoints ------------------------------------------------------------------------------------------------

STORAGE_TYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
                 "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                 "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                 "BoolStorage": torch.bool}


class _ScriptObject:
    """The attributes of one TorchScript module object (set by the pickle's BUILD)."""

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor(storage, offset, size, stride, *_):
    return storage.as_strided(size, stride, offset).clone()


class _TorchScriptUnpickler(pickle.Unpickler):
    """Reads a TorchScript archive's ``data.pkl``: module objects become ``_ScriptObject``, tensors are rebuilt
    from the archive's raw storages; any other global is refused, so nothing in the file is executed."""

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_TYPES:
            return STORAGE_TYPES[name]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        _, dtype, key, _, _ = pid
        data = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)


def read_torchscript_weights(path):
    """The tensors of a TorchScript archive (OpenAI's ``ViT-B-32.pt``) as a state dict, without ``torch.jit.load``:
    only ``data.pkl`` is unpickled, by an unpickler that knows module objects, tensors and storages and nothing
    else; the archive's TorchScript code is never compiled or run."""
    with zipfile.ZipFile(path) as archive:
        (data,) = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        prefix = data.split("/")[0]
        with archive.open(data) as handle:
            root = _TorchScriptUnpickler(handle, archive, prefix).load()
    state = {}

    def walk(obj, path):
        for key, value in getattr(obj, "state", {}).items():
            if isinstance(value, torch.Tensor):
                state[path + key] = value
            elif isinstance(value, _ScriptObject):
                walk(value, f"{path}{key}.")

    walk(root, "")
    return state


def _is_torchscript(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def read_clip_state(path):
    """A CLIP state dict from a file: OpenAI TorchScript archive, ``torch.save`` state dict (OpenAI, open_clip,
    ``{"state_dict": ...}`` wrappers) or ``.safetensors``."""
    path = Path(path)
    if path.is_file() and _is_torchscript(path):
        try:
            state = read_torchscript_weights(path)
        except Exception as error:
            raise ModelError(f"cannot read TorchScript archive {path}: {str(error).splitlines()[0]}") from None
    else:
        state = read_checkpoint(path)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


HF_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
            "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
HF_TOP = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
          "text_model.embeddings.position_embedding.weight": "positional_embedding",
          "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias",
          "vision_model.embeddings.class_embedding": "visual.class_embedding",
          "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
          "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
          "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
          "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
          "vision_model.post_layernorm.weight": "visual.ln_post.weight",
          "vision_model.post_layernorm.bias": "visual.ln_post.bias", "logit_scale": "logit_scale"}
EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "position_ids")
"""Entries of OpenAI's archive and of HF / open_clip state dicts that are not weights."""


def openai_layout(state):
    """OpenAI / open_clip key names from any supported CLIP state dict (HF ``CLIPModel`` keys mapped: q/k/v
    projections fused into ``in_proj``, projections transposed); non-weight entries dropped."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith(EXTRA_KEYS)}
    if "visual.layer1.0.conv1.weight" in state or "visual.trunk.stem.0.weight" in state:
        raise ModelError("this is a CLIP with a convolutional image tower (RN50 ...); only ViT towers are supported")
    if not any(k.startswith("text_model.") for k in state):
        if "text_projection.weight" in state:
            state["text_projection"] = state.pop("text_projection.weight").t()
        return state
    out = {HF_TOP[k]: v for k, v in state.items() if k in HF_TOP}
    out["visual.proj"] = state["visual_projection.weight"].t()
    out["text_projection"] = state["text_projection.weight"].t()
    pattern = re.compile(r"(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in state.items():
        match = pattern.match(key)
        if not match:
            continue
        tower, index, name, kind = match.groups()
        prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
        if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            if name.endswith("q_proj"):
                parts = [state[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                out[f"{prefix}attn.in_proj_{kind}"] = torch.cat(parts)
        else:
            out[f"{prefix}{HF_BLOCK[name]}.{kind}"] = value
    return out


OURS_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
              "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
              "mlp.c_proj": "mlp.fc2"}


def ours_from_openai(state):
    """Our parameter names from OpenAI / open_clip ones."""
    out = {}
    for key, value in state.items():
        match = re.match(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$", key)
        if match:
            tower = "visual" if match.group(1) else "text"
            rest = match.group(3)
            for old, new in OURS_BLOCK.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[f"{tower}.blocks.{match.group(2)}.{rest}"] = value
        elif key == "visual.proj":
            out["visual.proj.weight"] = value.t()
        elif key == "text_projection":
            out["text.proj.weight"] = value.t()
        elif key.startswith("visual.") or key == "logit_scale":
            out[key] = value
        else:
            out[f"text.{key}"] = value
    return out


def openai_from_ours(state):
    """The inverse of ``ours_from_openai`` (how the shipped tiny CLIP is stored: open_clip can load it)."""
    out = {}
    for key, value in state.items():
        match = re.match(r"(visual|text)\.blocks\.(\d+)\.(.+)$", key)
        if match:
            rest = match.group(3)
            for old, new in OURS_BLOCK.items():
                if rest.startswith(new):
                    rest = old + rest[len(new):]
                    break
            out[f"{'visual.' if match.group(1) == 'visual' else ''}transformer.resblocks.{match.group(2)}.{rest}"] = value
        elif key == "visual.proj.weight":
            out["visual.proj"] = value.t()
        elif key == "text.proj.weight":
            out["text_projection"] = value.t()
        else:
            out[key.removeprefix("text.")] = value
    return out


def config_from_state(state, base=None):
    """The architecture a state dict (OpenAI layout) holds; what the weights cannot tell (heads, activation,
    tokenisation, preprocessing) comes from ``base`` or OpenAI's conventions (64-wide heads, quick-GELU)."""
    required = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "text_projection",
                "token_embedding.weight", "positional_embedding", "ln_final.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise ModelError(f"not a CLIP checkpoint (no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    base = base or CLIPConfig()

    def depth(prefix):
        return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})

    vision_width, _, patch, _ = state["visual.conv1.weight"].shape
    text_width = state["ln_final.weight"].shape[0]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    same_widths = base.vision_width == vision_width and base.text_width == text_width
    return CLIPConfig(**{
        **{f.name: getattr(base, f.name) for f in fields(CLIPConfig)},
        "embed_dim": state["text_projection"].shape[1], "image_size": patch * grid, "patch_size": patch,
        "vision_width": vision_width, "vision_layers": depth("visual.transformer.resblocks."),
        "vision_heads": base.vision_heads if same_widths else max(vision_width // 64, 1),
        "context_length": state["positional_embedding"].shape[0], "vocab_size": state["token_embedding.weight"].shape[0],
        "text_width": text_width, "text_layers": depth("transformer.resblocks."),
        "text_heads": base.text_heads if same_widths else max(text_width // 64, 1),
        "mlp_ratio": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / vision_width})


def open_clip_config(name):
    """Our config of an open_clip architecture name (``ViT-B-32``, ``ViT-B-16-quickgelu``, ...), or None."""
    import open_clip
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        return None
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if not isinstance(vision.get("layers"), int) or "timm_model_name" in vision or "hf_model_name" in text:
        raise ModelError(f"open_clip model '{name}' is not a plain ViT CLIP (ResNet, timm or HF towers are not "
                         "supported)")
    return CLIPConfig(embed_dim=cfg["embed_dim"], image_size=vision["image_size"], patch_size=vision["patch_size"],
                      vision_width=vision["width"], vision_layers=vision["layers"],
                      vision_heads=vision["width"] // vision.get("head_width", 64),
                      context_length=text.get("context_length", 77), vocab_size=text.get("vocab_size", 49408),
                      text_width=text["width"], text_layers=text["layers"], text_heads=text.get("heads", 8),
                      mlp_ratio=vision.get("mlp_ratio", 4.0), quick_gelu=bool(cfg.get("quick_gelu", False)))


def hf_config(folder):
    """Our config of a Hugging Face ``CLIPModel`` folder (``config.json``)."""
    from transformers import AutoConfig
    if not (Path(folder) / "config.json").is_file():
        raise ModelError(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        hf = AutoConfig.from_pretrained(folder)
    except Exception as error:
        raise ModelError(f"cannot read a Hugging Face config in {folder} ({str(error).splitlines()[0][:120]})") \
            from None
    if hf.model_type != "clip":
        raise ModelError(f"'{folder}' is a {hf.model_type} model, not CLIP")
    v, t = hf.vision_config, hf.text_config
    if v.hidden_act not in ("quick_gelu", "gelu") or v.hidden_act != t.hidden_act:
        raise ModelError(f"'{folder}': activation {v.hidden_act!r} / {t.hidden_act!r} not supported")
    mean, std = OPENAI_MEAN, OPENAI_STD
    processor = Path(folder) / "preprocessor_config.json"
    if processor.is_file():
        spec = json.loads(processor.read_text())
        mean, std = tuple(spec.get("image_mean", mean)), tuple(spec.get("image_std", std))
    return CLIPConfig(embed_dim=hf.projection_dim, image_size=v.image_size, patch_size=v.patch_size,
                      vision_width=v.hidden_size, vision_layers=v.num_hidden_layers, vision_heads=v.num_attention_heads,
                      context_length=t.max_position_embeddings, vocab_size=t.vocab_size, text_width=t.hidden_size,
                      text_layers=t.num_hidden_layers, text_heads=t.num_attention_heads,
                      mlp_ratio=v.intermediate_size / v.hidden_size, quick_gelu=v.hidden_act == "quick_gelu",
                      eps=v.layer_norm_eps, eot_token_id=None if t.eos_token_id == 2 else t.eos_token_id,
                      mean=mean, std=std)


def clip_card(name):
    """``(card, path)`` of a CLIP model card (``"family": "clip"``; shipped name or card path), else None."""
    found = read_card(name)
    return found if found is not None and found[0].get("family") == "clip" else None


def is_clip_model(name):
    """Whether ``create_model`` should hand ``name`` to ``create_clip``: a CLIP model card or an open_clip
    architecture name."""
    if name is None:
        return False
    if clip_card(name) is not None:
        return True
    import open_clip
    return open_clip.get_model_config(name) is not None


def create_clip(name=None, weights=None, hf_dir=None, device="cpu"):
    """A CLIP in eval mode, loaded strictly, with its tokenizer (``model.tokenizer``).

    * ``hf_dir``: a Hugging Face ``CLIPModel`` folder (``config.json``, ``model.safetensors`` or
      ``pytorch_model.bin``, tokenizer files), or ``weights`` = a ``.safetensors`` / ``.bin`` of HF keys with
      ``name`` = that folder's config.
    * ``name``: a shipped CLIP card (``synthetic_clip``) or a card path; or an open_clip architecture name
      (``ViT-B-32``, ``ViT-B-16-quickgelu``, ...: heads and activation from open_clip's config), whose weights come
      from ``weights`` or, without it, open_clip's random initialisation.
    * ``weights`` alone: an OpenAI CLIP file (TorchScript archive ``ViT-B-32.pt`` or a plain state dict) or an
      open_clip state dict; the architecture is read from the weights with OpenAI's conventions (64-wide heads,
      quick-GELU; pass the open_clip ``name`` for GELU models such as ``ViT-B-32``).
    """
    tokenizer = None
    if hf_dir is not None:
        config = hf_config(hf_dir)
        state = read_clip_state(weights) if weights else _hf_weights(hf_dir)
        state = openai_layout(state)
        tokenizer = hf_tokenizer(hf_dir, config.context_length)
    else:
        card = clip_card(name)
        if card is not None:
            card, path = card
            config = card_config(card, path, CLIPConfig)
            tokenizer = WordTokenizer(card["vocabulary"], config.context_length) if "vocabulary" in card else None
            if tokenizer is not None and len(tokenizer.vocabulary) != config.vocab_size:
                raise ModelError(f"{path}: {len(tokenizer.vocabulary)} words for {config.vocab_size} token embeddings")
            weights = weights or path.with_suffix(".pth")
        else:
            config = open_clip_config(name) if name is not None else None
            if name is not None and config is None:
                raise ModelError(f"unknown CLIP model '{name}': not a shipped card nor an open_clip architecture")
        if weights is not None:
            state = openai_layout(read_clip_state(weights))
        elif name is not None:
            state = _open_clip_random(name)
        else:
            raise ModelError("a CLIP needs --model, --weights or --hf-dir")
    return clip_from_state(state, config, tokenizer).to(device)


def clip_from_state(state, base=None, tokenizer=None):
    """Our CLIP (eval mode) from an OpenAI-layout state dict; ``base`` gives what the weights cannot tell
    (see ``config_from_state``); the tokenizer defaults to OpenAI's."""
    config = config_from_state(state, base)
    model = CLIP(config, tokenizer or OpenAITokenizer(config.context_length, config.vocab_size))
    load_weights(model, ours_from_openai(state))
    return model.eval()


def hf_tokenizer(folder, context_length):
    """The folder's Hugging Face tokenizer, or OpenAI's byte-pair tokenizer (the same vocabulary as every
    OpenAI-derived ``CLIPModel``) when the folder has no tokenizer files."""
    try:
        return HFTokenizer(folder, context_length)
    except ModelError:
        return OpenAITokenizer(context_length)


def _open_clip_random(name):
    import open_clip
    return openai_layout(open_clip.create_model(name).state_dict())


def _hf_weights(folder):
    for file in ("model.safetensors", "pytorch_model.bin"):
        if (Path(folder) / file).is_file():
            return read_clip_state(Path(folder) / file)
    raise ModelError(f"model folder '{folder}' has no model.safetensors or pytorch_model.bin")


__all__ = ["CLIP", "CLIPConfig", "ImageSide", "TextSide", "create_clip", "explain_pairs", "is_clip_model",
           "read_torchscript_weights", "similarity_logits"]
