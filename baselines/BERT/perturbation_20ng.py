"""Perturbation test on 20 Newsgroups (TI's bert_pertub_20ng.py, batched), from a local copy of the data.

Data: the extracted 20news-bydate archive (--data-dir, plain text files), sklearn's
``fetch_20newsgroups(subset, remove=('headers', 'footers', 'quotes'))`` read from --data-home without downloading
(offline it fails and says so), or --data FILE: a JSON list of {"text", "label"} objects or
{"data": [...], "target": [...]}, a .jsonl file of {"text", "label"} lines, or a CSV file with text and label
columns. --num-samples documents (TI: 3000, drawn with random.seed(0)) are encoded with [CLS]/[SEP], truncated
and padded to max_length (TI: 512), and explained for their ground-truth class. At each step f in 0, 0.1, ..., 1
(TI's np.arange(0, 1.1, 0.1)) the int(max_length * f) top-scored positions of the padded row are removed
(input_ids and attention_mask set to 0, cumulatively; padding counts, as in TI); --neg removes the lowest-scored
first. Prints the accuracy per step (%), the area under it (sklearn auc over the steps) and, unless --no-abpc, the
area between the most- and least-relevant-first curves of the explained class's logit and probability (ABPC);
--output writes JSON.
"""
import argparse
import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from BERT_rationale_benchmark.models.model_utils import load_classifier, load_params, load_tokenizer  # noqa: E402
from BERT_rationale_benchmark.utils import DataError  # noqa: E402
from baselines.BERT.perturbation_common import (add_hooked_model_argument, add_perturbation_arguments,  # noqa: E402
                                                Tally, check_arguments, explanation_scores,
                                                print_report)
from baselines.cli import add_device_argument, positive_int, run  # noqa: E402
from baselines.methods import add_method_arguments, resolve  # noqa: E402
from baselines.models.hooked import load_text_classifier  # noqa: E402

FRACTIONS = np.arange(0, 1.1, 0.1).tolist()
REMOVE = ("headers", "footers", "quotes")


def fetch(data_home, subset):
    """Texts and labels from sklearn's local 20 Newsgroups cache (never downloads)."""
    from sklearn.datasets import fetch_20newsgroups
    try:
        bunch = fetch_20newsgroups(data_home=data_home, subset=subset, remove=REMOVE, download_if_missing=False)
    except OSError:
        raise DataError(f"20 Newsgroups not found under {data_home or 'the default sklearn data home'} and "
                        "downloading is off; pass --data-home with a local copy or --data FILE") from None
    return list(bunch.data), [int(t) for t in bunch.target]


def read_folder(root, subset):
    """Texts and labels from the extracted 20news-bydate archive, ROOT/20news-bydate-{train,test}/<group>/<message>
    (plain text read as latin-1, labels in the sorted order of the group folders, as sklearn builds its cache),
    with headers, footers and quotes removed."""
    from sklearn.datasets import load_files
    from sklearn.datasets._twenty_newsgroups import (strip_newsgroup_footer, strip_newsgroup_header,
                                                     strip_newsgroup_quoting)
    subsets = ["train", "test"] if subset == "all" else [subset]
    texts, labels = [], []
    for name in subsets:
        folder = Path(root) / f"20news-bydate-{name}"
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist (extract 20news-bydate.tar.gz into {root})")
        bunch = load_files(str(folder), encoding="latin1", load_content=True)
        texts += [strip_newsgroup_quoting(strip_newsgroup_footer(strip_newsgroup_header(text)))
                  for text in bunch.data]
        labels += [int(t) for t in bunch.target]
    return texts, labels


def load_texts(data_dir, data_home, data, subset):
    """Texts and labels from whichever local copy is given (folder, sklearn cache or export)."""
    if data_dir:
        return read_folder(data_dir, subset)
    return read_export(data) if data else fetch(data_home, subset)


def read_export(path):
    """Texts and labels from a JSON, JSONL or CSV export."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle))
        elif path.suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            records = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(records, dict):
            return list(records["data"]), [int(t) for t in records["target"]]
        return [r["text"] for r in records], [int(r["label"]) for r in records]
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: expected text/label records or data/target lists ({error!r})") from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="extracted 20news-bydate archive (20news-bydate-test/<group>/...)")
    source.add_argument("--data-home", help="sklearn data home holding the 20 Newsgroups cache")
    source.add_argument("--data", help="JSON / JSONL / CSV export with text and label")
    parser.add_argument("--subset", default="test", choices=["train", "test", "all"],
                        help="with --data-dir or --data-home")
    parser.add_argument("--model_params", required=True, help="params JSON (bert_dir, bert_vocab, max_length)")
    classifier = parser.add_mutually_exclusive_group(required=True)
    classifier.add_argument("--checkpoint", help="fine-tuned classifier state dict (HF names) of the params' BERT")
    add_hooked_model_argument(classifier)
    parser.add_argument("--num-labels", type=positive_int, default=20, help="classes of the classifier (default 20)")
    parser.add_argument("--num-samples", type=positive_int, default=3000,
                        help="documents drawn (default 3000, as TI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0, as TI)")
    parser.add_argument("--max-length", type=positive_int, default=None, help="padded length (default: the params')")
    parser.add_argument("--output", default=None, help="write the result JSON here")
    add_device_argument(parser)
    add_perturbation_arguments(parser)
    add_method_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    params = load_params(args.model_params)
    texts, labels = load_texts(args.data_dir, args.data_home, args.data, args.subset)
    if any(not 0 <= label < args.num_labels for label in labels):
        raise DataError(f"labels must lie in 0..{args.num_labels - 1} (--num-labels)")
    random.seed(args.seed)
    chosen = random.sample(range(len(texts)), min(args.num_samples, len(texts)))
    max_length = args.max_length or params["max_length"]
    if args.model:
        model, tokenizer = load_text_classifier(args.model, args.num_labels, args.device)
    else:
        model = load_classifier(params, args.checkpoint, args.num_labels, args.device)
        tokenizer = load_tokenizer(params)
    encoded = tokenizer([texts[i] for i in chosen], max_length=max_length, truncation=True, padding="max_length",
                        return_tensors="pt", return_token_type_ids=False)
    targets = torch.tensor([labels[i] for i in chosen])
    tally = Tally(FRACTIONS, args.neg, both_orders=not args.no_abpc)
    for start in tqdm(range(0, len(chosen), args.batch_size), desc="perturbation", unit="batch"):
        inputs = {k: encoded[k][start:start + args.batch_size].to(args.device)
                  for k in ("input_ids", "attention_mask")}
        batch_targets = targets[start:start + args.batch_size].to(args.device)
        with torch.no_grad():
            clean = (model(inputs).argmax(-1) == batch_targets).sum().item()
        scores = explanation_scores(model, inputs, batch_targets, args)
        tally.add(model, inputs, scores, batch_targets, clean, chunk=args.forward_batch)
    result = {"method": resolve(args.method), "negative": args.neg, **tally.report()}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, args.output)


if __name__ == "__main__":
    run(main)
