"""Quarantine: a failed instance is kept with a reason file beside it, never dropped."""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable


def quarantine_file(
    root: Path, stage: str, source: Path, reason: str, *, name: str | None = None,
    overwrite: bool = False, **context,
) -> Path:
    """Copy `source` into root/<stage>/<date>/ with `<name>.reason.json`; return the copy's path.

    A copy (not a move) keeps the landing zone complete, so a fixed rule can re-run the batch.
    With overwrite, a re-run that fails the same way replaces its earlier copy.
    """
    return quarantine_write(
        root, stage, lambda tmp: shutil.copyfile(source, tmp), reason, name=name or source.name,
        overwrite=overwrite, source=str(source), **context,
    )


def quarantine_write(
    root: Path, stage: str, write: Callable[[Path], None], reason: str, *, name: str,
    overwrite: bool = False, **context,
) -> Path:
    """Write a quarantined copy with `write(temp_path)` (e.g. bytes a receiver refused) into
    root/<stage>/<date>/ with its `.reason.json`; return its path."""
    now = datetime.now(timezone.utc)
    folder = root / stage / now.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name if overwrite else _free_name(folder, name)
    tmp = target.with_name(target.name + ".tmp")
    write(tmp)
    os.replace(tmp, target)
    reason_doc = {"reason": reason, "stage": stage, "at": now.isoformat(), **context}
    target.with_name(target.name + ".reason.json").write_text(json.dumps(reason_doc, indent=2, default=str))
    return target


def _free_name(folder: Path, base: str) -> Path:
    candidate = folder / base
    n = 1
    while candidate.exists():
        candidate = folder / f"{base}.{n}"
        n += 1
    return candidate
