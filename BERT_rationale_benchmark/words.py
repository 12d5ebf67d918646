"""From word-piece scores to whitespace-word scores and top-k word rationales (TE's scheme)."""
import numpy as np

from BERT_rationale_benchmark.utils import DataError

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[UNK]", "[PAD]")
TOP_K = tuple(range(5, 85, 5))
"""k = 5, 10, ..., 80 words, as TE's pipeline writes them."""


def word_scores(words, pieces, scores, special=SPECIAL_TOKENS):
    """TE's per-character scheme: each word piece's score is repeated once per character of the piece (special
    tokens skipped, ``##`` stripped), and word ``i`` gets the max over its characters. Returns one score per word
    the pieces reach (fewer than ``len(words)`` when the document was truncated; the last one may be partial).

    ``pieces`` may be the tokenizer's strings or each piece's characters in the text (which also spells out
    [UNK] pieces). Raises ``ValueError`` when the pieces do not spell the words (case-insensitive)."""
    chars, char_scores = [], []
    for piece, score in zip(pieces, scores):
        if piece in special:
            continue
        piece = piece[2:] if piece.startswith("##") else piece
        chars.append(piece)
        char_scores.extend([float(score)] * len(piece))
    spelled = "".join(chars).lower()
    result, start = [], 0
    for index, word in enumerate(words):
        if start >= len(char_scores):
            break
        end = start + len(word)
        if spelled[start:end] != word.lower()[:len(spelled[start:end])]:
            raise DataError(f"the word pieces do not spell word {index} {word!r} (got {spelled[start:end]!r})")
        result.append(max(char_scores[start:end]))
        start = end
    return result


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
