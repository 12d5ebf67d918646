"""A tiny random BERT for smoke runs and tests: a Hugging Face folder whose vocabulary covers an ERASER folder.

Writes OUTPUT/{config.json, model.safetensors, tokenizer files, vocab.txt} (a ``BertModel`` with random weights;
fine-tuning adds the classification head) and OUTPUT/params.json, a params file for bert_pipeline.py that
fine-tunes it in seconds.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from BERT_rationale_benchmark.utils import load_flattened_documents  # noqa: E402
from baselines.cli import run  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def basic_tokens(text):
    """Lower-cased words and single punctuation characters, as BERT's basic tokenizer splits them."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def make_tiny_bert(folder, texts, hidden=32, layers=2, heads=2, seed=0, max_position=512):
    """Write the model and its tokenizer (vocabulary: every basic token of ``texts``) to ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizer
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({token for text in texts for token in basic_tokens(text)} - set(SPECIALS))
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = BertConfig(vocab_size=len(SPECIALS) + len(words), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max_position)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def tiny_params(folder, max_length=256, epochs=2, lr=1e-3, batch_size=8):
    """A params file (model_utils.py layout) that fine-tunes the tiny BERT in ``folder``."""
    return {"max_length": max_length, "bert_vocab": str(folder), "bert_dir": str(folder),
            "evidence_classifier": {"classes": ["NEG", "POS"], "batch_size": batch_size, "epochs": epochs,
                                    "patience": epochs, "lr": lr, "max_grad_norm": 1.0}}


def tiny_bert_for(data_dir, folder, hidden=32, layers=2, heads=2, seed=0, **params):
    """A tiny BERT in ``folder`` whose vocabulary covers the ERASER folder's documents, and ``folder/params.json``
    (``tiny_params(folder, **params)``); returns the params path."""
    texts = [" ".join(words) for words in load_flattened_documents(data_dir).values()]
    folder = make_tiny_bert(folder, texts, hidden, layers, heads, seed)
    (folder / "params.json").write_text(json.dumps(tiny_params(folder, **params), indent=2) + "\n")
    return folder / "params.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="ERASER folder whose documents the vocabulary covers")
    parser.add_argument("--output", required=True, type=Path, help="folder to write")
    parser.add_argument("--hidden", type=int, default=32, help="hidden size (default 32)")
    parser.add_argument("--layers", type=int, default=2, help="blocks (default 2)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)
    params = tiny_bert_for(args.data_dir, args.output, args.hidden, args.layers, args.heads, args.seed)
    print(f"wrote {params.parent} and {params}")


if __name__ == "__main__":
    run(main)
