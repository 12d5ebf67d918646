"""What the BERT perturbation tests share (TI's protocol, batched): cumulative removal of the top-scored tokens.

For a document with explanation scores ``s`` (clamped at 0; negated with ``--neg``), step ``f`` removes the
``int(n * f)`` highest-scored positions, where ``n`` is the document's token count (Movies) or the padded length
(20 Newsgroups); removing means setting both ``input_ids`` and ``attention_mask`` to 0 there. The ranking is
computed once (stable: ties keep their order), so the removals are cumulative across steps, as TI's in-place
loop makes them. All steps of a batch of documents go through the model together.
"""
import numpy as np
import torch
from sklearn.metrics import auc

from baselines.cli import positive_int
from baselines.methods import explain, method_options, resolve


def removal_ranks(scores, candidates):
    """``[B, L]`` rank of every position by descending score (0 = removed first); positions outside
    ``candidates`` rank last."""
    scores = scores.masked_fill(~candidates, float("-inf"))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return torch.argsort(order, dim=1)


def perturbed(inputs, ranks, counts):
    """``[B * S, L]`` inputs: row ``b * S + s`` is document ``b`` without its ``counts[b, s]`` top positions."""
    remove = ranks[:, None, :] < counts[:, :, None]
    keep = (~remove).long()
    return {name: (value[:, None, :] * keep).flatten(0, 1) for name, value in inputs.items()}


@torch.no_grad()
def correct_per_step(model, inputs, scores, labels, fractions, lengths=None, chunk=64):
    """Number of documents still classified as ``labels`` at each removal fraction.

    ``scores`` ``[B, L]`` rank the positions; ``lengths`` ``[B]`` (Movies) limit the candidates to each document's
    own tokens and set ``n``; without ``lengths`` every position of the padded row is a candidate and ``n = L``."""
    batch, width = inputs["input_ids"].shape
    positions = torch.arange(width, device=scores.device)
    if lengths is None:
        lengths = torch.full((batch,), width, device=scores.device)
    candidates = positions[None, :] < lengths[:, None]
    ranks = removal_ranks(scores, candidates)
    counts = torch.tensor([[int(int(n) * f) for f in fractions] for n in lengths.tolist()], device=scores.device)
    rows = perturbed(inputs, ranks.to(inputs["input_ids"].device), counts.to(inputs["input_ids"].device))
    predictions = torch.cat([model({k: v[i:i + chunk] for k, v in rows.items()}).argmax(-1)
                             for i in range(0, batch * len(fractions), chunk)])
    hits = predictions.view(batch, len(fractions)) == labels[:, None].to(predictions.device)
    return hits.sum(0).cpu()


def explanation_scores(model, inputs, labels, args):
    """Target-class relevance ``[B, L]`` clamped at 0, negated with ``--neg`` (TI)."""
    options = method_options(args)
    scores = explain(model, inputs, resolve(args.method), class_index=labels, **options).detach().clamp(min=0)
    return -scores if args.neg else scores


def add_perturbation_arguments(parser):
    parser.add_argument("--neg", action="store_true",
                        help="negative perturbation: remove the lowest-scored tokens first (TI's --neg, a real "
                             "switch here)")
    parser.add_argument("--batch-size", type=positive_int, default=4,
                        help="documents explained per batch; all their steps run together (default 4)")
    parser.add_argument("--forward-batch", type=positive_int, default=64,
                        help="perturbed rows per forward (default 64)")


def add_hooked_model_argument(parser):
    """``--model hf:FOLDER``: the user's own classifier instead of the params' BERT and its checkpoint."""
    parser.add_argument("--model", metavar="hf:FOLDER", default=None,
                        help="a Hugging Face text classifier folder (BERT, RoBERTa, DistilBERT, ELECTRA) explained "
                             "through hooks, instead of the params' BERT with --checkpoint; its own tokenizer "
                             "encodes the texts (the params still give the classes and max_length)")


def check_arguments(parser, args):
    if args.class_index is not None:
        parser.error("--class-index does not apply: each document is explained for its ground-truth class")
    if args.batch_size < 1 or args.forward_batch < 1:
        parser.error("--batch-size and --forward-batch must be at least 1")


def report(fractions, correct, total, clean):
    """Accuracies in % per step and the area under them (sklearn ``auc`` over the fractions)."""
    accuracy = [100.0 * c / total for c in correct]
    return {"fractions": [round(f, 4) for f in fractions], "accuracy": accuracy,
            "auc": float(auc(np.asarray(fractions), np.asarray(accuracy))), "clean_accuracy": 100.0 * clean / total,
            "documents": total}
