"""Result files of the host (train, demo, bench): the one JSON writer,
:func:`zipml.reference.files.write_json`, which the gateware's build flow uses too."""

from __future__ import annotations

from ..reference.files import write_json

__all__ = ["write_json"]
