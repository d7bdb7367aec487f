"""Compendium records: machine-readable evidence that a claim holds in a stated regime.

A record is a JSON object with: id, claim, model, kernel (dotted path or null), assumptions (list of
physical assumptions), scope (the regime tested), evidence (seeds, spins, steps, measured errors,
tolerances, tables), passed, dependencies (ids of the records it relies on), package_version, and
hash = sha256 of the canonical JSON of everything else (sorted keys, compact separators, UTF-8).
Records are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


from .. import __version__
from ..serialization import to_jsonable

REQUIRED_FIELDS = ("id", "claim", "model", "kernel", "assumptions", "scope", "evidence", "passed",
                   "dependencies", "package_version", "hash")


def canonical_json(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(record: dict) -> str:
    return hashlib.sha256(canonical_json(record).encode("utf-8")).hexdigest()


def make_record(*, id, claim, model, kernel, assumptions, scope, evidence, passed, dependencies=()) -> dict:
    rec = to_jsonable({
        "id": id, "claim": claim, "model": model, "kernel": kernel, "assumptions": list(assumptions),
        "scope": scope, "evidence": evidence, "passed": bool(passed), "dependencies": list(dependencies),
        "package_version": __version__,
    })
    rec["hash"] = content_hash(rec)
    return rec


def check_record(rec: dict) -> None:
    """Raise ValueError unless `rec` has every field and its hash matches its content."""
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"record {rec.get('id')!r} lacks fields {missing}")
    if rec["hash"] != content_hash(rec):
        raise ValueError(f"record {rec['id']!r}: hash does not match its content")


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(rec: dict, out_dir) -> Path:
    check_record(rec)
    path = Path(out_dir) / f"{rec['id']}.json"
    atomic_write_text(path, json.dumps(rec, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path
