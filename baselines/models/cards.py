"""Model cards: a shipped model's JSON (family, architecture ``config``, ``mean``/``std``, class names) beside its
``.pth`` weights in ``pretrained/``, or a card path the user gives."""
import json
from pathlib import Path

from .vit import ModelError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def read_card(name):
    """``(card, path)`` for a shipped model name or a ``.json`` path, None when there is no such card. A card that
    is not a JSON object is a one-line error."""
    if name is None:
        return None
    path = Path(name) if str(name).endswith(".json") else PRETRAINED_DIR / f"{name}.json"
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"model card {path} is not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {path} is not a JSON object")
    return card, path


def card_config(card, path, config_class):
    """``config_class`` built from the card's ``config``, ``mean``, ``std`` and ``class_names``; a card missing one
    of the first three, or with settings the architecture does not take, is a one-line error."""
    try:
        return config_class(**card["config"], mean=tuple(card["mean"]), std=tuple(card["std"]),
                            class_names=tuple(card.get("class_names", ())))
    except KeyError as error:
        raise ModelError(f"model card {path} has no {error}") from None
    except TypeError as error:
        raise ModelError(f"model card {path} does not fit the architecture ({error})") from None
