"""Perturbation test on ERASER Movie Reviews (TI's bert_pertub_movie.py, batched): accuracy while the top-scored
tokens are removed.

Documents: every split (TI uses test + train + val), encoded as bert_pipeline.py does ([CLS] text [SEP], truncated
to the params' max_length). The classifier is bert_pipeline.py's fine-tuned checkpoint (OUTPUT/classifier/
classifier.pt). Each document is explained for its ground-truth class; at each step f in 0.52, 0.54, ..., 0.68
(TI's np.arange(0.52, 0.68, 0.02), whose float end point is included) the int(n * f) top-scored of its n tokens
are removed (input_ids and attention_mask set to 0, cumulatively); --neg removes the lowest-scored first.
Prints the accuracy per step (%), the clean accuracy and the area under the curve over the steps (TI prints
no area), and (unless --no-abpc) the area between the most- and least-relevant-first curves of the explained
class's logit and probability over the steps (ABPC, AttnLRP's figure); writes
OUTPUT/<method>/perturbation_{positive|negative}.json.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from BERT_rationale_benchmark.models.model_utils import (encode, load_classifier, load_params,  # noqa: E402
                                                         load_tokenizer, pad_batch)
from BERT_rationale_benchmark.utils import DataError, load_flattened_documents, load_split  # noqa: E402
from baselines.BERT.perturbation_common import (add_hooked_model_argument, add_perturbation_arguments,  # noqa: E402
                                                Tally, check_arguments, explanation_scores,
                                                print_report)
from baselines.cli import add_device_argument, positive_int, run  # noqa: E402
from baselines.methods import add_method_arguments, resolve  # noqa: E402
from baselines.models.hooked import load_text_classifier  # noqa: E402

FRACTIONS = np.arange(0.52, 0.68, 0.02).tolist()
"""TI's steps, float values and all (int(n * f) depends on them at exact multiples)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="ERASER folder: {train,val,test}.jsonl and docs/")
    parser.add_argument("--output_dir", required=True, type=Path,
                        help="bert_pipeline.py's output folder (checkpoint in OUTPUT/classifier; results written "
                             "to OUTPUT/<method>)")
    parser.add_argument("--model_params", required=True, help="the params JSON the classifier was trained with")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="classifier state dict (default OUTPUT/classifier/classifier.pt)")
    parser.add_argument("--splits", nargs="+", choices=["train", "val", "test"], default=["test", "train", "val"],
                        help="documents to perturb (default: all, as TI)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N documents (quick runs)")
    add_device_argument(parser)
    add_perturbation_arguments(parser)
    add_hooked_model_argument(parser)
    add_method_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def load_documents(args, tokenizer=None):
    """The documents of ``args.splits`` encoded as bert_pipeline.py does: (params, token id lists, labels);
    ``tokenizer``: another than the params' (``--model hf:FOLDER``)."""
    params = load_params(args.model_params)
    classes = params["evidence_classifier"]["classes"]
    annotations = [a for split in args.splits for a in load_split(args.data_dir, split)][:args.limit]
    if not annotations:
        raise DataError("no documents to perturb")
    unknown = [a for a in annotations if a.classification not in classes]
    if unknown:
        raise DataError(f"annotation {unknown[0].annotation_id!r} has class {unknown[0].classification!r}, the "
                        f"params list {', '.join(classes)}")
    documents = load_flattened_documents(args.data_dir, {a.docid for a in annotations})
    tokenizer = tokenizer or load_tokenizer(params)
    ids = [encode(tokenizer, " ".join(documents[a.docid]), params["max_length"])["input_ids"] for a in annotations]
    labels = torch.tensor([classes.index(a.classification) for a in annotations])
    return params, ids, labels


def checkpoint_path(args):
    checkpoint = args.checkpoint or args.output_dir / "classifier" / "classifier.pt"
    if not Path(checkpoint).is_file():
        raise DataError(f"no checkpoint {checkpoint} (run bert_pipeline.py first or pass --checkpoint)")
    return checkpoint


def evaluate(args, ids, labels, model):
    """The test for the settings ``args`` on the encoded documents with ``model``; writes and returns the result."""
    tally = Tally(FRACTIONS, args.neg, both_orders=not args.no_abpc)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in tqdm(range(0, len(order), args.batch_size), desc="perturbation", unit="batch"):
        rows = order[start:start + args.batch_size]
        inputs = pad_batch([ids[i] for i in rows], args.device)
        targets = labels[rows].to(args.device)
        with torch.no_grad():
            clean = (model(inputs).argmax(-1) == targets).sum().item()
        scores = explanation_scores(model, inputs, targets, args)
        tally.add(model, inputs, scores, targets, clean, lengths=inputs["attention_mask"].sum(1),
                  chunk=args.forward_batch)
    result = {"method": resolve(args.method), "negative": args.neg, **tally.report()}
    folder = args.output_dir / resolve(args.method)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"perturbation_{'negative' if args.neg else 'positive'}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, path)
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.model:
        classes = load_params(args.model_params)["evidence_classifier"]["classes"]
        model, tokenizer = load_text_classifier(args.model, len(classes), args.device)
        params, ids, labels = load_documents(args, tokenizer)
    else:
        params, ids, labels = load_documents(args)
        model = load_classifier(params, checkpoint_path(args), len(params["evidence_classifier"]["classes"]),
                                args.device)
    evaluate(args, ids, labels, model)


if __name__ == "__main__":
    run(main)
