"""The experiment log: one JSON line per `eval`, `compress` or `sweep` run.

The voice-assistant thesis tracked its runs with MLflow; a JSON-lines file
does the same job without a server: every run appends

    {"time": "2026-11-22T08:00:00Z", "command": "eval", "argv": [...],
     "config": {...}, "git": "5e114f0", "git_dirty": false,
     "metrics": {...}, "wall_s": 12.3}

and `read_runs` gives them back for comparison (`[r["metrics"]["perplexity"] for r in
read_runs(path) if r["command"] == "eval"]`). The file is `runs/runs.jsonl` in the
working directory unless `MINISLM_RUNS` or the command's `--runs` names another;
it is rewritten atomically on every append, so a crash never leaves half a line.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from ..checkpoint import atomic_write_text
from ..errors import InputError

DEFAULT_RUNS_FILE = "runs/runs.jsonl"         # runs/ is git-ignored


def runs_file(path=None) -> Path:
    """The JSONL run log: `path`, else $MINISLM_RUNS, else runs/runs.jsonl."""
    return Path(path or os.environ.get("MINISLM_RUNS") or DEFAULT_RUNS_FILE)


@functools.lru_cache(maxsize=1)
def git_revision() -> tuple[str | None, bool | None]:
    """(short commit hash, working tree has changes) of the minislm checkout, or (None, None)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _jsonable(value):
    """Config values as JSON (paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def append_run(command: str, config: dict, metrics: dict, wall_s: float, path=None) -> dict:
    """Append one record to the runs file; returns the record."""
    rev, dirty = git_revision()
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "argv": sys.argv[1:],
        "config": _jsonable(config),
        "git": rev,
        "git_dirty": dirty,
        "metrics": _jsonable(metrics),
        "wall_s": round(float(wall_s), 3),
    }
    target = runs_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(target, old + json.dumps(record, sort_keys=True) + "\n")
    return record


def read_runs(path=None) -> list[dict]:
    """Every record of the runs file, oldest first."""
    target = runs_file(path)
    if not target.exists():
        return []
    records = []
    for lineno, line in enumerate(target.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{target}:{lineno}: not a JSON run record ({e.msg})") from None
    return records
