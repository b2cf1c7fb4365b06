"""Reading a JSON file a user points at: its parsed value, or a one-line InputError naming the file and what is
wrong (missing, not UTF-8, not JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from ross3d.errors import InputError


def read_json(path: str | Path, role: str = "") -> object:
    """The parsed content of `path`; `role` (e.g. "train option deepspeed_config") is named when it is missing."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(path, f"missing ({role})" if role else "missing") from err
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text (byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from err
