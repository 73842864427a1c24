"""Result files: every JSON report of the project (train, demo, bench, build) is written here.

It sits in the lowest layer so that every layer writes its reports the same way
(docs/design.md §4: ``zipml.hw.build`` may not import the host).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile

__all__ = ["write_json", "source_commit"]


def _json_default(o):
    # NumPy scalars and arrays (and anything else with ``tolist``) become Python numbers and
    # lists, without importing NumPy here
    tolist = getattr(o, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _finite(o, where, bad):
    """``o`` with every NaN and infinity replaced by None, their places appended to ``bad``."""
    if isinstance(o, float):                    # NumPy's float64 too
        if math.isfinite(o):
            return o
        bad.append(where or "$")
        return None
    if isinstance(o, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", bad) for i, v in enumerate(o)]
    tolist = getattr(o, "tolist", None)
    if callable(tolist):
        return _finite(tolist(), where, bad)
    return o


def write_json(path, obj, indent: int = 1) -> None:
    """Atomic JSON write (temporary file in the same folder, then rename), so an interrupted run
    never leaves a half-written report in place of the previous one.

    The file is strict JSON: a NaN or an infinity (a diverged loss) is written as null, and a
    document that is an object then says where in ``"non_finite"``: ``{"count", "first"}``
    (the first 20 places, e.g. ``mse[12]``)."""
    bad = []
    obj = _finite(obj, "", bad)
    if bad and isinstance(obj, dict):
        obj["non_finite"] = {"count": len(bad), "first": bad[:20]}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent, default=_json_default, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def source_commit():
    """Short hash of the checkout's HEAD, ``+dirty`` with uncommitted changes to tracked files
    (None outside a git checkout): a report says which code measured it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if dirty.strip() else "")) if rev else None
