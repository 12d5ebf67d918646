"""Reading torch files that may be hostile: tensors and plain Python values only, never code."""
import torch

from baselines.cli import UserError


def load_tensors(path, hint=""):
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, dicts, lists, tuples, numbers, strings.

    A file that holds anything else (a crafted pickle that would run code when loaded, another program's objects)
    or cannot be read (truncated, not a torch file) is a ``UserError`` naming it, followed by ``hint``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every way a foreign or damaged file fails to load is the same user error
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot read {path} as tensors and plain values ({reason[:160]})"
                        + (f"; {hint}" if hint else "")) from None
