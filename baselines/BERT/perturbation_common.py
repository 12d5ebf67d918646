"""What the BERT perturbation tests share (TI's protocol, batched): cumulative removal of the top-scored tokens.

For a document with explanation scores ``s`` (clamped at 0; negated with ``--neg``), step ``f`` removes the
``int(n * f)`` highest-scored positions, where ``n`` is the document's token count (Movies) or the padded length
(20 Newsgroups); removing means setting both ``input_ids`` and ``attention_mask`` to 0 there. The ranking is
computed once (stable: ties keep their order), so the removals are cumulative across steps, as TI's in-place
loop makes them. All steps of a batch of documents go through the model together.

Unless ``--no-abpc``, the same steps also run in the other removal order, and the explained (ground-truth) class's
logit and probability along the most- and least-relevant-first orders give AttnLRP's area between the curves
(ABPC, see ``baselines.eval.metrics``) over the test's fractions.
"""
import numpy as np
import torch
from sklearn.metrics import auc

from baselines.cli import positive_int
from baselines.eval.metrics import abpc_summary
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
def per_step(model, inputs, scores, labels, fractions, lengths=None, chunk=64, both_orders=False):
    """The documents at each removal fraction: ``{"correct": [S]`` documents still classified as ``labels``,
    ``"logit"``, ``"prob": [O, B, S]`` the ``labels`` class's logit and probability}``, ``O = 2`` with
    ``both_orders`` (row 0 the order of ``scores``, row 1 the reverse), else 1.

    ``scores`` ``[B, L]`` rank the positions; ``lengths`` ``[B]`` (Movies) limit the candidates to each document's
    own tokens and set ``n``; without ``lengths`` every position of the padded row is a candidate and ``n = L``."""
    batch, width = inputs["input_ids"].shape
    positions = torch.arange(width, device=scores.device)
    if lengths is None:
        lengths = torch.full((batch,), width, device=scores.device)
    candidates = positions[None, :] < lengths[:, None]
    device = inputs["input_ids"].device
    counts = torch.tensor([[int(int(n) * f) for f in fractions] for n in lengths.tolist()], device=device)
    orders = [scores, -scores] if both_orders else [scores]
    parts = [perturbed(inputs, removal_ranks(s, candidates).to(device), counts) for s in orders]
    rows = {name: torch.cat([part[name] for part in parts]) for name in inputs}
    total = len(orders) * batch * len(fractions)
    logits = torch.cat([model({k: v[i:i + chunk] for k, v in rows.items()}) for i in range(0, total, chunk)])
    logits = logits.double().view(len(orders), batch, len(fractions), -1)
    index = labels.to(device).view(1, batch, 1, 1).expand(len(orders), batch, len(fractions), 1)
    hits = logits[0].argmax(-1) == labels[:, None].to(device)
    return {"correct": hits.sum(0).cpu(), "logit": logits.gather(-1, index)[..., 0].cpu(),
            "prob": logits.softmax(-1).gather(-1, index)[..., 0].cpu()}


class Tally:
    """Adds up ``per_step`` over batches; ``report`` gives the accuracies, their area and (with both orders)
    ABPC."""

    def __init__(self, fractions, neg, both_orders):
        self.fractions, self.neg, self.both_orders = fractions, neg, both_orders
        self.correct, self.clean, self.total, self.curves = torch.zeros(len(fractions), dtype=torch.long), 0, 0, []

    def add(self, model, inputs, scores, labels, clean, lengths=None, chunk=64):
        """One batch: ``clean`` = its documents classified right before any removal."""
        step = per_step(model, inputs, scores, labels, self.fractions, lengths, chunk, self.both_orders)
        self.correct += step["correct"]
        self.clean += clean
        self.total += len(labels)
        if self.both_orders:
            self.curves.append(torch.stack([step["logit"], step["prob"]]))

    def report(self):
        """Accuracies in % per step, the area under them (sklearn ``auc`` over the fractions); ABPC of the
        explained class's logit and probability, and their mean curves, when both orders ran."""
        result = report(self.fractions, self.correct.tolist(), self.total, self.clean)
        if self.curves:
            (logit, prob) = torch.cat(self.curves, dim=2).numpy()
            (morf_logit, lerf_logit), (morf_prob, lerf_prob) = (c[::-1] if self.neg else c for c in (logit, prob))
            result.update(abpc_summary(morf_logit, lerf_logit, morf_prob, lerf_prob, x=self.fractions))
        return result


def print_report(result, wrote=None):
    """The accuracy per step, then the clean accuracy, the AUC and (when both orders ran) ABPC in one line."""
    print("steps    " + " ".join(f"{f:6.2f}" for f in result["fractions"]))
    print("accuracy " + " ".join(f"{a:6.2f}" for a in result["accuracy"]))
    abpc = f", ABPC logit {result['abpc_logit']:.4f}, prob {result['abpc_prob']:.4f}" if "abpc_logit" in result else ""
    print(f"clean accuracy {result['clean_accuracy']:.2f}, AUC over the steps {result['auc']:.4f}{abpc}"
          + (f"; wrote {wrote}" if wrote else ""))


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
    parser.add_argument("--no-abpc", action="store_true",
                        help="skip the other removal order and with it the area between the most- and "
                             "least-relevant-first curves (ABPC; it doubles the forwards)")


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
