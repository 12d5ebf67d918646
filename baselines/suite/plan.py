"""A reproduction run as a list of steps, each with a settings fingerprint; a rerun skips the finished ones.

A step is one unit of work (method x test x setting, or a data / fine-tuning step). Its fingerprint is

    fingerprint = sha256(json({"settings": step settings, "deps": fingerprints of the steps it reads}))[:16]

so changing a setting changes the fingerprint of the steps that use it and of every step downstream of them, and
of no other. A finished step leaves OUTPUT/steps/<key>.json = {"key", "fingerprint", "settings", "result",
"note"}, written atomically after its outputs, so a run killed at any point leaves only finished steps recorded.
A record that cannot be read is rerun, and its new record carries the note that says so (the report shows it).
"""
import hashlib
import json
import os
from dataclasses import dataclass, field

UNREADABLE_NOTE = "its earlier result could not be read, so it was run again"


@dataclass
class Step:
    key: str
    """Unique name, e.g. ``perturbation/rollout/top/neg``."""
    kind: str
    """Which runner executes it (see ``baselines.suite.steps.RUNNERS``)."""
    settings: dict
    deps: tuple = ()
    """Keys of the steps whose outputs it reads."""
    method: str = None
    artifact: str = None
    """A file the step leaves for later steps; the step counts as finished only while it exists."""
    fingerprint: str = field(default="", init=False)


def fingerprint(settings, dep_prints):
    text = json.dumps({"settings": settings, "deps": dep_prints}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seal(steps):
    """Set every step's fingerprint (dependencies first); a dependency that is not in the plan is an error."""
    prints = {}
    for step in steps:
        missing = [dep for dep in step.deps if dep not in prints]
        if missing:
            raise ValueError(f"step {step.key} depends on {missing}, which do not come before it")
        step.fingerprint = fingerprint(step.settings, [prints[dep] for dep in step.deps])
        prints[step.key] = step.fingerprint
    return steps


class Store:
    """The records of finished steps under ``folder/steps``."""

    def __init__(self, folder):
        self.folder = os.path.join(folder, "steps")

    def path(self, key):
        return os.path.join(self.folder, key.replace("/", "__") + ".json")

    def state(self, step):
        """``("done", record)``, ``("missing" | "changed" | "unreadable", None)``."""
        path = self.path(step.key)
        if not os.path.exists(path):
            return "missing", None
        try:
            with open(path) as handle:
                record = json.load(handle)
            if not isinstance(record, dict) or record.get("key") != step.key or "result" not in record:
                raise ValueError("not a step record")
        except (OSError, ValueError):
            return "unreadable", None
        if record.get("fingerprint") != step.fingerprint:
            return "changed", None
        if step.artifact and not os.path.exists(step.artifact):
            return "missing", None
        return "done", record

    def save(self, step, result, note=None):
        """Write the record atomically; returns it as a later run will read it (JSON round trip)."""
        text = json.dumps({"key": step.key, "fingerprint": step.fingerprint, "settings": step.settings,
                           "result": result, "note": note}, indent=1, sort_keys=True)
        os.makedirs(self.folder, exist_ok=True)
        path = self.path(step.key)
        with open(path + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)
        return json.loads(text)
