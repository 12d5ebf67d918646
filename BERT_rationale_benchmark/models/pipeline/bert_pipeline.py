"""ERASER Movie Reviews with a BERT classifier: fine-tune it, explain the test split, write top-k word rationales.

As TE's pipeline (CVPR'21, Fig. token-F1 vs k), with --method instead of a hard-coded variable:
  1. documents are encoded as [CLS] text [SEP] and truncated to the params' max_length (how many were truncated is
     reported);
  2. without a checkpoint in OUTPUT/classifier the classifier is fine-tuned (see training.py; an interrupted run
     resumes after its last finished epoch), else the checkpoint is loaded into our explainable BERT (create_bert);
     with --model hf:FOLDER your own fine-tuned classifier is explained through hooks instead (no training);
  3. every test document is explained for its ground-truth class (scores clamped at 0), in batches; a word's
     score is the max over its word pieces (TE's per-character scheme);
  4. OUTPUT/<method>/identifier_results_{k}.json for k = 5, 10, ..., 80: one JSONL line per document with the top-k
     words as hard rationales and every word's score as soft rationale (score them with metrics.py);
     OUTPUT/<method>/heatmaps.html and TE's LaTeX files {j}_GT_{neg|pos}_{correct}.tex (ground-truth class) and
     {j}_CF.tex (the other class, class-specific methods, two classes); OUTPUT/<method>/summary.json.
--method random ranks words by uniform random word-piece scores (a baseline; seeded by the docid).
Beyond TE: batches of documents; each k's file holds exactly the top-k words (TE's lists grew across k, top-5 plus
top-10 plus ..., which scores the same since ERASER compares sets); soft scores are written too; word pieces are
matched to words through the tokenizer's character offsets, so [UNK] pieces, stripped accents and characters the
tokenizer drops (soft hyphens, zero-width spaces) keep the words aligned.
"""
import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from BERT_rationale_benchmark import visualize  # noqa: E402
from BERT_rationale_benchmark.models.model_utils import (encode, load_classifier, load_params,  # noqa: E402
                                                         load_tokenizer, pad_batch)
from BERT_rationale_benchmark.models.pipeline.training import RESTART, train_classifier  # noqa: E402
from BERT_rationale_benchmark.utils import DataError, load_datasets, load_flattened_documents  # noqa: E402
from BERT_rationale_benchmark.words import TOP_K, rationale_record, word_scores  # noqa: E402
from baselines.cli import add_device_argument, positive_int, run  # noqa: E402
from baselines.methods import METHODS, add_method_arguments, explain, method_options, resolve  # noqa: E402
from baselines.models.hooked import load_text_classifier  # noqa: E402
from baselines.safe_load import load_tensors  # noqa: E402

RANDOM = "random"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="ERASER folder: {train,val,test}.jsonl and docs/")
    parser.add_argument("--output_dir", required=True, type=Path,
                        help="classifier checkpoint (OUTPUT/classifier) and results (OUTPUT/<method>)")
    parser.add_argument("--model_params", required=True,
                        help="params JSON (e.g. BERT_params/movies_bert.json): max_length, bert_vocab, bert_dir, "
                             "evidence_classifier {classes, batch_size, epochs, patience, lr, max_grad_norm}; "
                             "see BERT_rationale_benchmark/models/model_utils.py")
    parser.add_argument("--model", metavar="hf:FOLDER", default=None,
                        help="explain your own fine-tuned Hugging Face text classifier folder (BERT, RoBERTa, "
                             "DistilBERT, ELECTRA) through hooks instead of fine-tuning the params' BERT: no "
                             "training, its own tokenizer encodes the documents (the params still give the classes "
                             "and max_length)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="documents explained per batch (default 8)")
    add_device_argument(parser)
    add_method_arguments(parser, extra_choices={RANDOM: "random ranking baseline"})
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.class_index is not None:
        parser.error("--class-index does not apply: the pipeline explains each document's ground-truth class")
    return args


def encode_documents(tokenizer, documents, max_length):
    """``{docid: encoding}`` (see ``model_utils.encode``) of the flattened documents joined by spaces."""
    return {docid: encode(tokenizer, " ".join(words), max_length) for docid, words in documents.items()}


def labelled(annotations, encodings, classes):
    """``[(input_ids, label index)]``; a class the params do not list is a ``DataError``."""
    pairs = []
    for a in annotations:
        if a.classification not in classes:
            raise DataError(f"annotation {a.annotation_id!r} has class {a.classification!r}, the params list "
                            f"{', '.join(classes)}")
        pairs.append((encodings[a.docid]["input_ids"], classes.index(a.classification)))
    return pairs


def ensure_classifier(args, params, splits, encodings):
    """The fine-tuned checkpoint: trained (or training resumed) unless one is already there."""
    folder = args.output_dir / "classifier"
    checkpoint = folder / "classifier.pt"
    unfinished = (folder / "last.pt").exists() or (
        (folder / "classifier_epoch_data.pt").exists()
        and not load_tensors(folder / "classifier_epoch_data.pt", RESTART).get("done"))
    if not checkpoint.exists() or unfinished:
        classes = params["evidence_classifier"]["classes"]
        train, val = (labelled(split, encodings, classes) for split in splits[:2])
        print(f"fine-tuning {params['bert_dir']} on {len(train)} documents ({len(val)} for validation)")
        train_classifier(params, train, val, folder, args.device)
    return checkpoint


def random_scores(docid, length):
    generator = torch.Generator().manual_seed(zlib.crc32(docid.encode()))
    return torch.rand(length, generator=generator)


def explain_batch(model, inputs, targets, method, options, docids):
    """``[B, L]`` relevance for ``targets`` clamped at 0, or, for ``random``, uniform scores seeded by the docid."""
    if method == RANDOM:
        scores = torch.zeros(inputs["input_ids"].shape)
        for row, (docid, length) in enumerate(zip(docids, inputs["attention_mask"].sum(1).tolist())):
            scores[row, :length] = random_scores(docid, length)
        return scores
    return explain(model, inputs, method, class_index=targets, **options).detach().clamp(min=0).cpu()


def explain_test(args, model, test, encodings, classes):
    """Explain every test document; returns per document (in test order) its scores, prediction and CF map."""
    method = args.method if args.method == RANDOM else resolve(args.method)
    options = {} if method == RANDOM else method_options(args)
    counterfactual = method != RANDOM and METHODS[method].class_specific and len(classes) == 2
    order = sorted(range(len(test)), key=lambda i: len(encodings[test[i].docid]["input_ids"]))
    found = [None] * len(test)
    for start in tqdm(range(0, len(order), args.batch_size), desc=f"explaining ({method})", unit="batch"):
        rows = order[start:start + args.batch_size]
        ids = [encodings[test[i].docid]["input_ids"] for i in rows]
        inputs = pad_batch(ids, args.device)
        targets = torch.tensor([classes.index(test[i].classification) for i in rows], device=args.device)
        with torch.no_grad():
            predicted = model(inputs).argmax(-1).cpu()
        docids = [test[i].docid for i in rows]
        maps = explain_batch(model, inputs, targets, method, options, docids)
        other = explain_batch(model, inputs, 1 - targets, method, options, docids) if counterfactual else None
        for row, i in enumerate(rows):
            n = len(ids[row])
            found[i] = {"scores": maps[row, :n], "predicted": int(predicted[row]),
                        "counterfactual": None if other is None else other[row, :n]}
    return method, options, found


def write_outputs(folder, test, documents, encodings, classes, explained):
    """The 16 result files, TE's LaTeX files and the HTML page as ``{file name: text}``, and the test accuracy."""
    files, lines = {}, {k: [] for k in TOP_K}
    sections, correct = [], 0
    for j, (annotation, found) in enumerate(zip(test, explained)):
        docid, encoding = annotation.docid, encodings[annotation.docid]
        label = classes.index(annotation.classification)
        right = int(found["predicted"] == label)
        correct += right
        words = word_scores(documents[docid], encoding["offsets"], found["scores"].tolist())
        for k in TOP_K:
            lines[k].append(rationale_record(annotation.annotation_id, docid, words, len(documents[docid]), k))
        tokens = encoding["tokens"]
        files[f"{j}_GT_{annotation.classification.lower()}_{right}.tex"] = visualize.latex(tokens,
                                                                                          found["scores"].tolist())
        rows = [(f"{annotation.classification} (ground truth)", visualize.html_row(tokens, found["scores"].tolist()))]
        if found["counterfactual"] is not None:
            files[f"{j}_CF.tex"] = visualize.latex(tokens, found["counterfactual"].tolist())
            rows.append((f"{classes[1 - label]} (counterfactual)",
                         visualize.html_row(tokens, found["counterfactual"].tolist(), rgb=(40, 90, 220))))
        sections.append((f"{j}: {docid}, predicted {classes[found['predicted']]}", rows))
    for k, records in lines.items():
        files[f"identifier_results_{k}.json"] = "".join(json.dumps(r) + "\n" for r in records)
    files["heatmaps.html"] = visualize.html_page(f"{folder.name}: test explanations", sections)
    return files, correct / len(test)


def write_set(folder, files, last="summary.json"):
    """Write ``files`` (``{name: text}``, ``last`` among them) into ``folder`` as one set: ``last`` is removed first,
    every file is written to a temporary name, then all are renamed, ``last`` at the end. A failure before the
    renames leaves the earlier set untouched; a set without ``last`` is incomplete."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / last).unlink(missing_ok=True)
    for name, text in files.items():
        (folder / f"{name}.tmp").write_text(text)
    for name in sorted(files, key=lambda name: name == last):
        os.replace(folder / f"{name}.tmp", folder / name)


def prepare(args, tokenizer=None):
    """What every method's run reads: params, splits, documents and their encodings, and the fine-tuned checkpoint
    (trained first when missing); with ``tokenizer`` (``--model hf:FOLDER``'s) no checkpoint and no training."""
    params = load_params(args.model_params)
    splits = load_datasets(args.data_dir)
    if not all(splits):
        raise DataError(f"{args.data_dir}: train, val and test must each hold at least one annotation")
    documents = load_flattened_documents(args.data_dir, {a.docid for split in splits for a in split})
    encodings = encode_documents(tokenizer or load_tokenizer(params), documents, params["max_length"])
    truncated = sum(e["truncated"] for e in encodings.values())
    print(f"{truncated} of {len(encodings)} documents truncated at max_length {params['max_length']}")
    checkpoint = None if tokenizer else ensure_classifier(args, params, splits, encodings)
    return SimpleNamespace(params=params, splits=splits, documents=documents, encodings=encodings,
                           truncated=truncated, checkpoint=checkpoint,
                           classes=params["evidence_classifier"]["classes"])


def evaluate(args, data, model):
    """Explain the test split with ``args.method`` using ``model`` and write OUTPUT/<method> (see the docstring)."""
    started = time.time()
    test, params, encodings = data.splits[2], data.params, data.encodings
    labelled(test, encodings, data.classes)
    method, options, explained = explain_test(args, model, test, encodings, data.classes)
    folder = args.output_dir / method
    files, accuracy = write_outputs(folder, test, data.documents, encodings, data.classes, explained)
    summary = {"method": method, "options": options, "test_documents": len(test), "test_accuracy": accuracy,
               "truncated_documents": data.truncated, "documents": len(encodings),
               "max_length": params["max_length"],
               "test_truncated": sum(encodings[a.docid]["truncated"] for a in test),
               "seconds": round(time.time() - started, 1)}
    write_set(folder, {**files, "summary.json": json.dumps(summary, indent=2) + "\n"})
    print(f"test accuracy {accuracy:.3f}; wrote {folder}/identifier_results_{{5..80}}.json, heatmaps.html, .tex")
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.model:
        classes = load_params(args.model_params)["evidence_classifier"]["classes"]
        model, tokenizer = load_text_classifier(args.model, len(classes), args.device)
        evaluate(args, prepare(args, tokenizer), model)
        return
    data = prepare(args)
    evaluate(args, data, load_classifier(data.params, data.checkpoint, len(data.classes), args.device))


if __name__ == "__main__":
    run(main)
