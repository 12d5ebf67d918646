"""Write a small movie-review-like data set in the ERASER Movie Reviews format (offline stand-in for ERASER Movies).

Layout of OUTPUT (the same seed and size always give the same bytes):
  docs/<docid>                 one review: newline-separated sentences of space-separated tokens
  {train,val,test}.jsonl       ERASER annotations (annotation_id, query, evidences, classification, docids)

How a review is built, so that only the evidence decides the label:
  - neutral filler sentences (plot, cast, production) from templates;
  - distractor sentences that use the sentiment adjectives of *both* classes about things other than the film
    (popcorn, parking, the weather, ...), drawn independently of the label: outside the evidence every word has
    the same distribution in both classes;
  - 2 to 4 evidence phrases about the film whose sentiment words carry the label ("the acting is superb",
    "i hated every minute of this movie"). Each phrase is one evidence span (one evidence group), token offsets
    into the flattened whitespace tokens of the document; the phrase's sentence may start with a neutral opener
    that is not part of the span.
The number of sentences of each kind does not depend on the label. Reviews are about 100 to 200 words long (at
most about 210 BERT uncased word pieces with [CLS] and [SEP], so max_length 256 truncates nothing); about 11% of
the words are evidence. Splits are 80% / 10% / 10%, half NEG and half POS.
"""
import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baselines.cli import UserError, prepare_output_folder, run  # noqa: E402

QUERY = "What is the sentiment of this review?"
SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
OUTPUTS = ("docs", "train.jsonl", "val.jsonl", "test.jsonl")

NAMES = ["anna", "marco", "helen", "david", "lucy", "peter", "sofia", "james", "maria", "thomas", "clara", "oliver"]
PROFESSIONS = ["teacher", "nurse", "detective", "farmer", "pilot", "lawyer", "painter", "sailor", "baker", "doctor"]
PLACES = ["paris", "a small town", "the mountains", "london", "a fishing village", "new york", "the desert",
          "an island", "chicago", "the countryside"]
GENRES = ["thriller", "comedy", "drama", "western", "documentary", "musical", "romance", "war film"]
TOPICS = ["a family secret", "an old house", "a long journey", "a lost letter", "a stolen painting", "a wedding"]
RELATIVES = ["brother", "sister", "friend", "neighbour", "cousin", "uncle", "aunt", "colleague"]
THINGS = ["popcorn", "parking", "coffee", "ticket line", "weather", "traffic", "lobby", "bus ride"]
MONTHS = ["january", "march", "may", "july", "september", "november"]
OBJECTS = ["a red car", "a piano", "a dog", "a boat", "an old clock", "a map", "a bicycle", "a camera"]

POSITIVE = ["brilliant", "wonderful", "superb", "delightful", "excellent", "great", "charming", "gripping",
            "lovely", "fantastic"]
NEGATIVE = ["awful", "terrible", "dreadful", "boring", "dull", "clumsy", "tedious", "horrible", "poor", "bad"]
ADVERBS = ["truly", "simply", "really", "quite", "just"]
ASPECTS = ["acting", "script", "dialogue", "pacing", "cinematography", "ending", "direction", "cast", "editing",
           "soundtrack"]
FILM = ["movie", "film", "picture"]
OPENERS = [[], [], ["honestly", ","], ["in", "the", "end", ","], ["all", "things", "considered", ","],
           ["to", "be", "fair", ","], ["overall", ","], ["as", "for", "me", ","]]
VERBS = {"POS": ["loved", "enjoyed", "adored", "savored"], "NEG": ["hated", "regretted", "loathed", "endured"]}
PHRASES = {"POS": ["works beautifully", "shines throughout", "never misses a beat", "stays with you"],
           "NEG": ["falls flat", "drags on and on", "never comes together", "wastes everyone 's time"]}
RECOMMEND = {"POS": "i would gladly recommend it to anyone", "NEG": "i would never recommend it to anyone"}

FILLERS = [
    "the story follows a {profession} named {name} who moves to {place} .",
    "the film runs about {number} minutes and was shot in {place} .",
    "{name} plays the {relative} of the main character .",
    "the director previously made a {genre} about {topic} .",
    "most of the second half takes place in {place} .",
    "there is a subplot involving {object} and a {profession} .",
    "the screenplay is based on a novel about {topic} .",
    "it opened in {month} , the same week as a {genre} .",
    "{name} and {name2} meet on a train to {place} .",
    "the first scene shows {object} on a kitchen table .",
    "i saw it with my {relative} on a {month} evening .",
    "the trailer suggests a {genre} , and the film is partly one .",
]
DISTRACTORS = [
    "the {thing} at the theater was {adjective} .",
    "my {relative} said the {thing} was {adjective} .",
    "before the screening i had a {adjective} sandwich .",
    "the {thing} on the way home was {adjective} .",
    "{name} , who sat next to me , had a {adjective} day at work .",
]


def _slots(rng):
    return {"name": rng.choice(NAMES), "name2": rng.choice(NAMES), "profession": rng.choice(PROFESSIONS),
            "place": rng.choice(PLACES), "genre": rng.choice(GENRES), "topic": rng.choice(TOPICS),
            "relative": rng.choice(RELATIVES), "thing": rng.choice(THINGS), "month": rng.choice(MONTHS),
            "object": rng.choice(OBJECTS), "number": str(rng.randrange(85, 160)),
            "adjective": rng.choice(POSITIVE + NEGATIVE)}


def evidence_phrase(rng, label):
    """Tokens of one label-carrying phrase about the film."""
    adjectives = POSITIVE if label == "POS" else NEGATIVE
    kind = rng.randrange(6)
    if kind == 0:
        text = f"the {rng.choice(ASPECTS)} is {rng.choice(adjectives)}"
    elif kind == 1:
        text = f"this {rng.choice(FILM)} is {rng.choice(ADVERBS)} {rng.choice(adjectives)}"
    elif kind == 2:
        text = f"i {rng.choice(VERBS[label])} every minute of this {rng.choice(FILM)}"
    elif kind == 3:
        text = f"{rng.choice(NAMES)} gives a {rng.choice(adjectives)} performance"
    elif kind == 4:
        text = f"the {rng.choice(ASPECTS)} {rng.choice(PHRASES[label])}"
    else:
        text = RECOMMEND[label]
    return text.split()


def make_review(rng, label):
    """Sentences (lists of tokens) and evidence sentence indices with (start, end) token ranges in the sentence."""
    kinds = ["filler"] * rng.randint(6, 10) + ["distractor"] * rng.randint(2, 4) + ["evidence"] * rng.randint(2, 4)
    rng.shuffle(kinds)
    sentences, spans = [], []
    for kind in kinds:
        if kind == "evidence":
            opener, phrase = rng.choice(OPENERS), evidence_phrase(rng, label)
            spans.append((len(sentences), len(opener), len(opener) + len(phrase)))
            sentences.append(opener + phrase + ["."])
        else:
            template = rng.choice(FILLERS if kind == "filler" else DISTRACTORS)
            sentences.append(template.format(**_slots(rng)).split())
    return sentences, spans


def annotation(docid, label, sentences, spans):
    """The ERASER annotation record of one review (offsets into the flattened tokens)."""
    starts = [0]
    for sentence in sentences:
        starts.append(starts[-1] + len(sentence))
    evidences = []
    for index, begin, end in spans:
        tokens = sentences[index][begin:end]
        evidences.append([{"text": " ".join(tokens), "docid": docid, "start_token": starts[index] + begin,
                           "end_token": starts[index] + end, "start_sentence": index, "end_sentence": index + 1}])
    return {"annotation_id": docid, "query": QUERY, "evidences": evidences, "classification": label,
            "docids": [docid]}


def generate(seed, num_docs):
    """``{split: [(docid, document_text, annotation), ...]}``, deterministic in ``seed`` and ``num_docs``."""
    rng = random.Random(seed)
    labels = ["NEG" if i % 2 == 0 else "POS" for i in range(num_docs)]
    rng.shuffle(labels)
    records = []
    for index, label in enumerate(labels):
        docid = f"{label.lower()}R_{index:04d}.txt"
        sentences, spans = make_review(rng, label)
        text = "\n".join(" ".join(sentence) for sentence in sentences) + "\n"
        records.append((docid, text, annotation(docid, label, sentences, spans)))
    split, start = {}, 0
    for position, (name, share) in enumerate(SPLITS):
        end = num_docs if position == len(SPLITS) - 1 else start + round(share * num_docs)
        split[name] = records[start:end]
        start = end
    return split


def prepare_output(output, overwrite):
    """Create ``output``; refuse a non-empty one unless ``overwrite`` (which removes only our own outputs)."""
    prepare_output_folder(output, overwrite, OUTPUTS)
    if (output / "docs.jsonl").exists():
        raise UserError(f"{output} holds a docs.jsonl; ERASER folders hold docs/ or docs.jsonl, not both")
    (output / "docs").mkdir(exist_ok=True)


def write_dataset(output, seed, num_docs):
    """Write the documents and the three annotation files; return the split sizes."""
    splits = generate(seed, num_docs)
    for name, records in splits.items():
        lines = []
        for docid, text, record in records:
            (output / "docs" / docid).write_text(text, encoding="utf-8", newline="\n")
            lines.append(json.dumps(record) + "\n")
        (output / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8", newline="\n")
    return {name: len(records) for name, records in splits.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="data seed; the same seed gives the same bytes")
    parser.add_argument("--num-docs", type=int, default=600,
                        help="reviews in all (default 600: 480 train, 60 val, 60 test)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder, replacing this script's earlier outputs there")
    args = parser.parse_args(argv)
    if args.num_docs < 10:
        parser.error("--num-docs must be at least 10 (every split needs reviews)")
    prepare_output(args.output, args.overwrite)
    sizes = write_dataset(args.output, args.seed, args.num_docs)
    print(f"wrote {sum(sizes.values())} reviews to {args.output} "
          f"({', '.join(f'{name} {count}' for name, count in sizes.items())})")


if __name__ == "__main__":
    run(main)
