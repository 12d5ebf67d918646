"""Explain a BERT classifier's predictions on texts: token relevance as .npy and as a coloured HTML page.

Example (any Hugging Face BERT folder with its tokenizer; a folder without a classifier gets an untrained head):
    python baselines/BERT/explain.py --model-dir DIR --method transformer_attribution "I hate that I love you."
Any supported Hugging Face text classifier folder, through hooks: --model hf:FOLDER --method generic_attribution.
"""
import argparse
import html
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from baselines.cli import UserError, add_device_argument, positive_int, run  # noqa: E402
from baselines.methods import add_method_arguments, explain, method_options, resolve  # noqa: E402
from baselines.models import create_bert, create_model  # noqa: E402
from baselines.models.bert import check_vocabulary  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain (or --texts-file)")
    parser.add_argument("--texts-file", metavar="FILE.json", default=None, help="a JSON list of strings")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", metavar="DIR",
                        help="Hugging Face BERT folder: config.json, model.safetensors or pytorch_model.bin, "
                             "tokenizer files (our explainable BERT copy)")
    source.add_argument("--model", metavar="hf:FOLDER",
                        help="any supported Hugging Face text classifier folder (BERT, RoBERTa, DistilBERT, ELECTRA) "
                             "with its tokenizer, explained through hooks (no LRP methods)")
    parser.add_argument("--num-labels", type=positive_int, default=None,
                        help="labels of the untrained head used when DIR has no classifier (default: the config's)")
    add_method_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="texts per batch (default 8)")
    parser.add_argument("--save-raw", metavar="OUT.npy", default=None,
                        help="write float32 [num_texts, max_tokens]: each text's relevance over all its tokens "
                             "([CLS] and [SEP] included), unnormalised, zero-padded")
    parser.add_argument("--html", metavar="OUT.html", default=None,
                        help="write a page with every text's tokens coloured by relevance")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    args.method = resolve(args.method)
    if args.model and not args.model.startswith("hf:"):
        raise UserError(f"--model takes hf:FOLDER, not {args.model} (our BERT copy: --model-dir DIR)")
    if args.model and args.num_labels is not None:
        raise UserError("--num-labels is for --model-dir (a hf:FOLDER model keeps its config's labels)")
    args.folder = args.model_dir or args.model.removeprefix("hf:")
    if bool(args.texts) == bool(args.texts_file):
        raise UserError("give either TEXT arguments or --texts-file FILE.json")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    return args


def read_texts(args):
    """The texts of the command line or of the JSON file (a list of strings)."""
    if not args.texts_file:
        return list(args.texts)
    try:
        texts = json.loads(Path(args.texts_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {args.texts_file}: {error}") from None
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{args.texts_file} must hold a non-empty JSON list of strings")
    return texts


def load_tokenizer(model_dir):
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:
        raise UserError(f"cannot load a tokenizer from {model_dir}: {str(error).splitlines()[0][:160]}") from None
    return check_vocabulary(tokenizer, model_dir)


def encode(tokenizer, texts, max_length):
    """Each text's encoding (``input_ids``, ``token_type_ids``), truncated to ``max_length`` tokens."""
    return [tokenizer(text, truncation=True, max_length=max_length) for text in texts]


def collate(encodings, pad_id, device):
    """A right-padded batch dict with the attention mask."""
    width = max(len(e["input_ids"]) for e in encodings)
    batch = {"input_ids": torch.full((len(encodings), width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros(len(encodings), width, dtype=torch.long),
             "token_type_ids": torch.zeros(len(encodings), width, dtype=torch.long)}
    for row, e in enumerate(encodings):
        n = len(e["input_ids"])
        batch["input_ids"][row, :n] = torch.tensor(e["input_ids"])
        batch["attention_mask"][row, :n] = 1
        batch["token_type_ids"][row, :n] = torch.tensor(e.get("token_type_ids", [0] * n))
    return {k: v.to(device) for k, v in batch.items()}


def load_model(args):
    """Our BERT copy (``--model-dir``) or a hooked Hugging Face text classifier (``--model hf:FOLDER``)."""
    if args.model_dir:
        return create_bert(args.model_dir, num_labels=args.num_labels, device=args.device)
    model = create_model(args.model, device=args.device)
    if getattr(model, "family", None) is None or model.family.kind != "text":
        raise UserError(f"--model {args.model} is not a text classifier")
    return model


def main(argv=None):
    args = parse_args(argv)
    texts = read_texts(args)
    model = load_model(args)
    if not model.head_trained:
        print(f"note: {args.folder} has no classifier head; using an untrained random {model.num_classes}-label "
              "head (seed 0): predictions and explanations show the mechanics only", file=sys.stderr)
    tokenizer = load_tokenizer(args.folder)
    encodings = encode(tokenizer, texts, min(model.config.max_position_embeddings, tokenizer.model_max_length))
    options = method_options(args)
    rows, probs = [], []
    for start in range(0, len(texts), args.batch_size):
        chunk = encodings[start:start + args.batch_size]
        batch = collate(chunk, tokenizer.pad_token_id or 0, args.device)
        with torch.no_grad():
            probs.append(model(batch).softmax(-1).cpu())
        relevance = explain(model, batch, args.method, class_index=args.class_index, **options).detach().float()
        rows += [r[:len(e["input_ids"])].cpu().numpy() for r, e in zip(relevance, chunk)]
    probs = torch.cat(probs)
    if args.save_raw:
        raw = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.float32)
        for i, r in enumerate(rows):
            raw[i, :len(r)] = r
        np.save(args.save_raw, raw)
    tokens = [tokenizer.convert_ids_to_tokens(e["input_ids"]) for e in encodings]
    if args.html:
        Path(args.html).write_text(render_html(args, model, texts, tokens, rows, probs), encoding="utf-8")
    for i, p in enumerate(probs):
        top = int(p.argmax())
        print(f"text {i}: predicted {model.class_names[top]} ({p[top]:.3f})")


def colour(value):
    """Red for positive, blue for negative relevance; ``value`` in [-1, 1]."""
    rgb = "220,30,30" if value >= 0 else "30,60,220"
    return f"rgba({rgb},{abs(value):.3f})"


def render_html(args, model, texts, tokens, rows, probs):
    """A self-contained page: per text, its tokens coloured by relevance normalised by the text's max |r|."""
    names = model.class_names
    head = "" if model.head_trained else " (untrained random classifier head)"
    parts = [f"<h1>{html.escape(args.method)}</h1>",
             f"<p>model: {html.escape(str(args.model_dir or args.model))}{head}. Red: positive, blue: negative "
             "relevance, normalised per text by its largest magnitude.</p>"]
    for i, (text, toks, row) in enumerate(zip(texts, tokens, rows)):
        top = int(probs[i].argmax())
        explained = names[args.class_index] if args.class_index is not None else names[top]
        scale = float(np.abs(row).max()) or 1.0
        spans = "".join(f'<span class="t" style="background:{colour(r / scale)}" title="{r:.4g}">'
                        f"{html.escape(t)}</span>" for t, r in zip(toks, row))
        parts.append(f'<div class="text"><p><b>text {i}</b>: predicted {html.escape(names[top])} '
                     f"({probs[i, top]:.3f}), explained {html.escape(explained)}</p><p>{spans}</p></div>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             ".t{display:inline-block;padding:1px 3px;margin:1px;border-radius:3px}"
             ".text{border-bottom:1px solid #ddd;padding:0.5em 0}")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(args.method)}</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


if __name__ == "__main__":
    run(main)
