"""From word-piece scores to whitespace-word scores and top-k word rationales (TE's scheme)."""
import bisect

import numpy as np

from BERT_rationale_benchmark.utils import DataError

TOP_K = tuple(range(5, 85, 5))
"""k = 5, 10, ..., 80 words, as TE's pipeline writes them."""


def word_starts(words):
    """Where each word starts in ``" ".join(words)``, the text the pipeline encodes."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    return starts


def word_scores(words, offsets, scores):
    """TE's scheme, aligned through the tokenizer's character offsets: word ``i`` gets the max score of the word
    pieces whose span ``[start, end)`` in ``" ".join(words)`` overlaps it. For pieces that tile the words this is
    TE's per-character rule (each character takes its piece's score, a word the max over its characters). Special
    tokens have offset ``None``. Characters the tokenizer drops (a soft hyphen, a zero-width space) do not shift
    later words; a word no piece covers (one made only of such characters) scores 0, as words past the truncation
    point do. Returns one score per word up to the last word a piece reaches (fewer than ``len(words)`` when the
    document was truncated)."""
    starts = word_starts(words)
    ends = [start + len(word) for start, word in zip(starts, words)]
    result = [None] * len(words)
    reached = 0
    for span, score in zip(offsets, scores):
        if span is None or span[0] >= span[1]:
            continue
        first = bisect.bisect_right(starts, span[0]) - 1
        if first < 0 or span[0] >= ends[first]:
            first += 1
        last = bisect.bisect_left(starts, span[1]) - 1
        if first >= len(words) or last < first:
            raise DataError(f"a word piece at characters {span[0]}-{span[1]} lies outside the document's words")
        for index in range(first, last + 1):
            result[index] = float(score) if result[index] is None else max(result[index], float(score))
        reached = max(reached, last + 1)
    return [0.0 if value is None else value for value in result[:reached]]


def top_k_words(scores, k):
    """Indices of the ``k`` highest scores (all when fewer), ties broken by position, highest first."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(i) for i in order[:k]]


def rationale_record(annotation_id, docid, scores, num_words, k):
    """One line of ``identifier_results_{k}.json``: the top-k words as one-token hard spans, and every word's
    soft score (0 for words past the truncation point)."""
    soft = list(map(float, scores)) + [0.0] * (num_words - len(scores))
    hard = [{"start_token": i, "end_token": i + 1} for i in sorted(top_k_words(scores, k))]
    return {"annotation_id": annotation_id,
            "rationales": [{"docid": docid, "hard_rationale_predictions": hard, "soft_rationale_predictions": soft}]}
