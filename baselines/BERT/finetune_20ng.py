"""Fine-tune a BERT classifier on 20 Newsgroups with Beyond Intuition's settings (TI's bert_finetuning_20ng.py), for
the 20 Newsgroups perturbation test (perturbation_20ng.py --checkpoint OUT).

TI's settings: the 20 classes, lr 5e-6, 22 epochs, batch 32, documents padded and truncated to max_length 512,
AdamW with a linear schedule after --warmup-steps (default 0), headers, footers and quotes removed as in the
perturbation test. Fixed from TI: the training subset is sklearn's 'train' (TI asked for the invalid 'training'),
and the result is a state dict (Hugging Face BertForSequenceClassification names), not a pickled whole model, so
perturbation_20ng.py (and anything else) reads it with torch.load(weights_only=True).

Data (never downloaded): --data-dir, the extracted 20news-bydate archive (20news-bydate-train/<group>/<message>,
read as plain text files); --data-home, a folder holding sklearn's own cache; or --data FILE, an export (see
perturbation_20ng.py). The run resumes after its last finished epoch (OUT.resume holds model, optimizer, schedule
and random states); the same seed and threads give the same weights.
"""
import argparse
import os
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from BERT_rationale_benchmark.models.model_utils import load_params, load_tokenizer, resolve_model_dir  # noqa: E402
from BERT_rationale_benchmark.models.pipeline.training import _pretrained, _save  # noqa: E402
from BERT_rationale_benchmark.utils import DataError  # noqa: E402
from baselines.BERT.perturbation_20ng import load_texts  # noqa: E402
from baselines.cli import add_device_argument, run  # noqa: E402

NUM_LABELS = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="extracted 20news-bydate archive (20news-bydate-train/ ...)")
    source.add_argument("--data-home", help="sklearn data home holding its 20 Newsgroups cache")
    source.add_argument("--data", help="JSON / JSONL / CSV export with text and label (the training documents)")
    parser.add_argument("--model_params", required=True,
                        help="params JSON: bert_dir (the pretrained BERT), bert_vocab, max_length")
    parser.add_argument("--output", required=True, type=Path, help="state dict to write (e.g. 20ng_classifier.pt)")
    parser.add_argument("--epochs", type=int, default=22, help="default 22 (TI)")
    parser.add_argument("--batch-size", type=int, default=32, help="default 32 (TI)")
    parser.add_argument("--lr", type=float, default=5e-6, help="AdamW learning rate (default 5e-6, TI)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (default 0)")
    parser.add_argument("--max-length", type=int, default=None, help="padded length (default: the params', TI 512)")
    parser.add_argument("--seed", type=int, default=0, help="shuffling and initialisation seed (default 0)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if min(args.epochs, args.batch_size) < 1 or args.lr <= 0 or args.warmup_steps < 0:
        parser.error("--epochs and --batch-size must be at least 1, --lr positive, --warmup-steps >= 0")
    return args


def train(model, encoded, labels, args, partial):
    """AdamW + linear schedule over ``epochs``; resumes from ``partial`` (after an epoch) when it exists."""
    from transformers import get_linear_schedule_with_warmup
    batches = -(-len(labels) // args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, args.warmup_steps, batches * args.epochs)
    shuffler, first = random.Random(args.seed), 0
    if partial.exists():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        shuffler.setstate(state["shuffler"])
        torch.set_rng_state(state["torch_rng"])
        first = state["epoch"] + 1
        print(f"resuming after epoch {first}")
    for epoch in range(first, args.epochs):
        model.train()
        order = shuffler.sample(range(len(labels)), k=len(labels))
        total, correct = 0.0, 0
        progress = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch")
        for start in progress:
            rows = order[start:start + args.batch_size]
            inputs = {k: v[rows].to(args.device) for k, v in encoded.items()}
            target = labels[rows].to(args.device)
            logits = model(**inputs).logits
            loss = F.cross_entropy(logits, target)
            if not torch.isfinite(loss):
                raise RuntimeError("the training loss is not finite (try a lower --lr)")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(rows)
            correct += (logits.argmax(-1) == target).sum().item()
            progress.set_postfix(loss=f"{loss.item():.3f}")
        print(f"epoch {epoch + 1}: train loss {total / len(labels):.4f}, accuracy {correct / len(labels):.3f}")
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
               "shuffler": shuffler.getstate(), "torch_rng": torch.get_rng_state(), "epoch": epoch}, partial)


def main(argv=None):
    args = parse_args(argv)
    params = load_params(args.model_params)
    texts, labels = load_texts(args.data_dir, args.data_home, args.data, "train")
    if any(not 0 <= label < NUM_LABELS for label in labels):
        raise DataError(f"labels must lie in 0..{NUM_LABELS - 1}")
    encoded = load_tokenizer(params)(texts, max_length=args.max_length or params["max_length"], truncation=True,
                                     padding="max_length", return_tensors="pt", return_token_type_ids=False)
    encoded = {k: encoded[k] for k in ("input_ids", "attention_mask")}
    torch.manual_seed(args.seed)
    model = _pretrained(params, NUM_LABELS).to(args.device)
    print(f"fine-tuning {resolve_model_dir(params['bert_dir'])} on {len(labels)} documents")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{args.output}.resume")
    train(model, encoded, torch.tensor(labels), args, partial)
    _save(model.state_dict(), args.output)
    os.remove(partial)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run(main)
