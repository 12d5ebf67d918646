"""The offline ERASER-format data generator and the ERASER data loaders."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BERT_rationale_benchmark import utils  # noqa: E402
from baselines.cli import run  # noqa: E402
from scripts import make_eraser_data  # noqa: E402


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eraser") / "movies"
    make_eraser_data.main(["--output", str(folder), "--seed", "3", "--num-docs", "300"])
    return folder


def test_same_seed_same_bytes(dataset, tmp_path):
    make_eraser_data.prepare_output(tmp_path / "again", False)
    make_eraser_data.write_dataset(tmp_path / "again", 3, 300)
    assert _files(tmp_path / "again") == _files(dataset)
    make_eraser_data.prepare_output(tmp_path / "other", False)
    make_eraser_data.write_dataset(tmp_path / "other", 4, 300)
    assert _files(tmp_path / "other") != _files(dataset)


def test_eraser_layout_and_evidence_offsets(dataset):
    train, val, test = utils.load_datasets(dataset)
    assert (len(train), len(val), len(test)) == (240, 30, 30)
    documents = utils.load_flattened_documents(dataset)
    assert len(documents) == 300
    for annotation in train + val + test:
        assert annotation.query == make_eraser_data.QUERY and annotation.classification in ("NEG", "POS")
        assert annotation.docid == annotation.annotation_id and annotation.docids == (annotation.docid,)
        assert 2 <= len(annotation.evidences) <= 4 and all(len(group) == 1 for group in annotation.evidences)
        words = documents[annotation.docid]
        sentences = utils.load_documents(dataset, [annotation.docid])[annotation.docid]
        for evidence in annotation.all_evidences():
            assert " ".join(words[evidence.start_token:evidence.end_token]) == evidence.text
            assert evidence.text in " ".join(sentences[evidence.start_sentence])
        assert 90 <= len(words) <= 210
    labels = [a.classification for a in train + val + test]
    assert labels.count("NEG") == labels.count("POS") == 150


def _bag_of_words_accuracy(dataset, keep):
    annotations = [a for split in utils.load_datasets(dataset) for a in split]
    documents = utils.load_flattened_documents(dataset)
    texts = []
    for annotation in annotations:
        words = documents[annotation.docid]
        evidence = np.zeros(len(words), bool)
        for e in annotation.all_evidences():
            evidence[e.start_token:e.end_token] = True
        texts.append(" ".join(w for w, inside in zip(words, evidence) if keep(inside)))
    features = CountVectorizer(token_pattern=r"[^ ]+").fit_transform(texts)
    labels = [a.classification for a in annotations]
    return cross_val_score(LogisticRegression(solver="liblinear"), features, labels, cv=4).mean()


def test_label_needs_the_evidence(dataset):
    assert _bag_of_words_accuracy(dataset, keep=lambda inside: not inside) < 0.62
    assert _bag_of_words_accuracy(dataset, keep=lambda inside: True) > 0.85
    assert _bag_of_words_accuracy(dataset, keep=lambda inside: inside) > 0.95


def test_non_evidence_words_are_shared_by_both_classes(dataset):
    documents = utils.load_flattened_documents(dataset)
    outside = {"NEG": set(), "POS": set()}
    for annotation in (a for split in utils.load_datasets(dataset) for a in split):
        evidence = {t for e in annotation.all_evidences() for t in range(e.start_token, e.end_token)}
        words = documents[annotation.docid]
        outside[annotation.classification].update(w for i, w in enumerate(words) if i not in evidence)
    sentiment = set(make_eraser_data.POSITIVE + make_eraser_data.NEGATIVE)
    assert sentiment <= outside["NEG"] and sentiment <= outside["POS"]


def test_output_folder_rules(tmp_path, capsys):
    folder = tmp_path / "data"
    make_eraser_data.main(["--output", str(folder), "--num-docs", "10"])
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: make_eraser_data.main(["--output", str(folder), "--num-docs", "10"]))
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    (folder / "notes.txt").write_text("kept")
    make_eraser_data.main(["--output", str(folder), "--num-docs", "12", "--overwrite"])
    assert len(list((folder / "docs").iterdir())) == 12 and (folder / "notes.txt").read_text() == "kept"


def test_docs_jsonl_is_read_like_docs_folder(dataset, tmp_path):
    documents = utils.load_documents(dataset)
    folder = tmp_path / "single"
    folder.mkdir()
    lines = [{"docid": d, "document": "\n".join(" ".join(s) for s in sentences)} for d, sentences in documents.items()]
    utils.write_jsonl(lines, folder / "docs.jsonl")
    assert utils.load_documents(folder) == documents
    (folder / "docs").mkdir()
    with pytest.raises(utils.DataError, match="both"):
        utils.load_documents(folder)


def test_loader_errors_are_one_line(dataset, tmp_path):
    with pytest.raises(utils.DataError, match="does not exist"):
        utils.load_datasets(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text(json.dumps({"annotation_id": "x", "classification": "POS"}) + "\n")
    with pytest.raises(utils.DataError, match=r"train.jsonl:1: not an ERASER annotation \(missing 'evidences'\)"):
        utils.load_split(bad, "train")
    (bad / "train.jsonl").write_text("{not json\n")
    with pytest.raises(utils.DataError, match="train.jsonl:1: not JSON"):
        utils.load_split(bad, "train")
    with pytest.raises(utils.DataError, match="has no val.jsonl"):
        utils.load_split(bad, "val")
    with pytest.raises(utils.DataError, match="no document for docid 'nowhere.txt'"):
        utils.load_documents(dataset, ["nowhere.txt"])
