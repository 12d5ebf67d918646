"""ERASER data: annotation records, the split files and the documents (the layout of jayded/eraserbenchmark).

A data folder holds ``{train,val,test}.jsonl`` (one ``Annotation`` per line) and the documents, either as files
``docs/<docid>`` or as one ``docs.jsonl`` of ``{"docid", "document"}`` lines, never both. A document is
newline-separated sentences of space-separated tokens; evidence offsets index the flattened token list. Problems
with the data raise ``DataError`` (a ``baselines.cli.UserError``) with a one-line message.
"""
import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Optional, Tuple

from baselines.cli import UserError

SPLITS = ("train", "val", "test")
EVIDENCE_FIELDS = ("text", "docid", "start_token", "end_token", "start_sentence", "end_sentence")


class DataError(UserError):
    """The data folder or one of its files is not what ERASER expects."""


@dataclass(frozen=True)
class Evidence:
    """One rationale span; ``start_token`` inclusive, ``end_token`` exclusive (likewise the sentences)."""
    text: str
    docid: str
    start_token: int = -1
    end_token: int = -1
    start_sentence: int = -1
    end_sentence: int = -1


@dataclass(frozen=True)
class Annotation:
    """One labelled instance: its evidence groups (each a tuple of ``Evidence``) and its class."""
    annotation_id: str
    query: str
    evidences: Tuple[Tuple[Evidence, ...], ...]
    classification: str
    query_type: Optional[str] = None
    docids: Optional[Tuple[str, ...]] = None

    def all_evidences(self):
        return tuple(chain.from_iterable(self.evidences))

    @property
    def docid(self):
        """The document this instance is about (Movies: one per instance): the first of ``docids``, else the
        first evidence's, else the annotation id."""
        if self.docids:
            return self.docids[0]
        evidences = self.all_evidences()
        return evidences[0].docid if evidences else self.annotation_id


def load_jsonl(path):
    """The JSON objects of a .jsonl file, one per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not JSON ({error.msg})") from None
    return records


def write_jsonl(records, path):
    Path(path).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def annotation_from_dict(record, where="annotation"):
    """An ``Annotation`` from one decoded jsonl line; ``where`` names the line in errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: not an ERASER annotation (a JSON object expected)")
    missing = [key for key in ("annotation_id", "evidences", "classification") if key not in record]
    if missing:
        raise DataError(f"{where}: not an ERASER annotation (missing {', '.join(repr(k) for k in missing)})")
    groups = record["evidences"]
    if not isinstance(groups, list) or not all(isinstance(group, list) for group in groups):
        raise DataError(f"{where}: not an ERASER annotation ('evidences' must be a list of lists)")
    evidences = []
    for group in groups:
        for evidence in group:
            if not isinstance(evidence, dict) or not {"docid", "start_token", "end_token"} <= set(evidence):
                raise DataError(f"{where}: not an ERASER annotation (an evidence needs docid, start_token, end_token)")
            if not all(type(evidence[k]) is int for k in ("start_token", "end_token")):
                raise DataError(f"{where}: evidence offsets must be integers, not {evidence['start_token']!r}, "
                                f"{evidence['end_token']!r}")
        evidences.append(tuple(Evidence(**{k: e[k] for k in EVIDENCE_FIELDS if k in e}) for e in group))
    docids = record.get("docids")
    return Annotation(annotation_id=str(record["annotation_id"]), query=record.get("query", ""),
                      evidences=tuple(evidences), classification=record["classification"],
                      query_type=record.get("query_type"), docids=tuple(docids) if docids else None)


def verify_evidence(annotations, documents):
    """Every evidence span ``[start_token, end_token)`` is non-empty and lies inside its document, else a
    ``DataError`` naming it (a span past the end would silently score as a shorter one)."""
    for annotation in annotations:
        for evidence in annotation.all_evidences():
            length = len(documents[evidence.docid])
            if not 0 <= evidence.start_token < evidence.end_token <= length:
                raise DataError(f"annotation {annotation.annotation_id!r}: evidence [{evidence.start_token}, "
                                f"{evidence.end_token}) is outside document {evidence.docid!r} of {length} tokens")


def annotations_from_jsonl(path):
    return [annotation_from_dict(record, f"{path}:{number}") for number, record in enumerate(load_jsonl(path), 1)]


def check_data_dir(data_dir):
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    return data_dir


def load_split(data_dir, split):
    data_dir = check_data_dir(data_dir)
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{data_dir} has no {split}.jsonl (an ERASER folder holds train/val/test.jsonl)")
    return annotations_from_jsonl(path)


def load_datasets(data_dir):
    """``(train, val, test)`` annotation lists."""
    return tuple(load_split(data_dir, split) for split in SPLITS)


def _tokenize(text):
    lines = (line.strip() for line in text.splitlines())
    return [[token for token in line.split(" ") if token] for line in lines if line]


def load_documents(data_dir, docids=None):
    """``{docid: [[token, ...] per sentence]}`` from ``docs/`` or ``docs.jsonl``; all documents when ``docids``
    is None."""
    data_dir = check_data_dir(data_dir)
    folder, single = data_dir / "docs", data_dir / "docs.jsonl"
    if folder.is_dir() and single.is_file():
        raise DataError(f"{data_dir} holds both docs/ and docs.jsonl; keep one")
    if single.is_file():
        texts = {str(r["docid"]): r["document"] for r in load_jsonl(single) if isinstance(r, dict) and "docid" in r}
        wanted = sorted(texts) if docids is None else sorted(set(map(str, docids)))
        missing = [d for d in wanted if d not in texts]
        if missing:
            raise DataError(f"no document for docid '{missing[0]}' in {single}")
        return {d: _tokenize(texts[d]) for d in wanted}
    if not folder.is_dir():
        raise DataError(f"{data_dir} has no docs/ folder and no docs.jsonl")
    wanted = sorted(p.name for p in folder.iterdir()) if docids is None else sorted(set(map(str, docids)))
    documents = {}
    for docid in wanted:
        path = folder / docid
        if not path.is_file():
            raise DataError(f"no document for docid '{docid}' in {folder}")
        documents[docid] = _tokenize(path.read_text(encoding="utf-8"))
    return documents


def load_flattened_documents(data_dir, docids=None):
    """``{docid: [token, ...]}``: the documents' sentences concatenated (the index space of evidence offsets)."""
    return {d: list(chain.from_iterable(s)) for d, s in load_documents(data_dir, docids).items()}


def annotation_docids(annotations):
    """Every docid the annotations refer to (their documents and their evidences)."""
    ids = set()
    for annotation in annotations:
        ids.add(annotation.docid)
        ids.update(e.docid for e in annotation.all_evidences())
    return ids
