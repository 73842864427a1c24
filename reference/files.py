"""Result files: every JSON report of the project (train, demo, bench, build) is written here.

It sits in the lowest layer so that every layer writes its reports the same way
(docs/design.md §4: ``zipml.hw.build`` may not import the host).
"""

from __future__ import annotations

import json
import os
import tempfile

__all__ = ["write_json"]


def _json_default(o):
    # NumPy scalars and arrays (and anything else with ``tolist``) become Python numbers and
    # lists, without importing NumPy here
    tolist = getattr(o, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def write_json(path, obj, indent: int = 1) -> None:
    """Atomic JSON write (temporary file in the same folder, then rename), so an interrupted run
    never leaves a half-written report in place of the previous one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent, default=_json_default, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
