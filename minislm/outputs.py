"""Where a command may write: never into its inputs, never over files minislm did not write.

Every writing command (quantize, prune, train, distill, finetune, compress, sweep,
export-gguf) and the pipeline go through this module before any work:

  * `check_output` refuses an --out equal to, inside, or containing one of the
    run's inputs (model, teacher, student, data files, config): writing there
    modifies the input, and a run keyed on its input files would change its own key.
  * It refuses a non-empty folder that minislm did not write unless `overwrite`
    (`--overwrite`): that folder may hold another model, whose config.json,
    weights and tokenizer a save replaces, and whose masks.safetensors or
    model.safetensors.index.json it deletes.
  * `mark_output` creates the folder with the marker file `minislm_output.json`;
    a folder carrying it is minislm's own output, which a re-run or `--resume`
    rewrites without --overwrite.
  * `output_lock` keeps two runs from writing one folder at once: a lock file
    created with O_EXCL holds the writer's pid; a lock whose process is gone is
    stale and taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .checkpoint import atomic_write_text
from .errors import InputError

MARKER = "minislm_output.json"
LOCK = "minislm.lock"


def refuse_inputs(out, inputs, what: str = "--out") -> None:
    """InputError when `out` is, lies inside, or contains one of the existing `inputs`.

    inputs: paths of folders or files; None and names that are not paths on disk
    (e.g. 'corpus', 'toolcall') are skipped. Symlinks are resolved first.
    """
    target = Path(out).resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        source = Path(given).resolve()
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "lies inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise InputError(f"{what} {out} {relation} the input {given}; writing there would "
                         "modify the input. Choose an output outside every input")


def is_minislm_output(folder) -> bool:
    """Does `folder` carry minislm's marker (it was written by a minislm command)?"""
    return (Path(folder) / MARKER).is_file()


def check_output(out, inputs=(), overwrite: bool = False, what: str = "--out") -> Path:
    """Refuse `out` (a folder) before any work; see the module docstring. Writes nothing."""
    out = Path(out)
    refuse_inputs(out, inputs, what)
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} exists and is not a folder")
    if out.is_dir() and not overwrite and not is_minislm_output(out):
        found = sorted(p.name for p in out.iterdir())
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5
                                            else "")
            raise InputError(f"{what} {out} is not empty ({shown}) and was not written by "
                             "minislm; its files would be replaced or deleted. Choose a new "
                             "or empty folder, or pass --overwrite")
    return out


def mark_output(out, command: str) -> Path:
    """Create folder `out` (if needed) and write minislm's marker into it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not is_minislm_output(out):
        atomic_write_text(out / MARKER, json.dumps(
            {"written_by": f"minislm {command}",
             "note": "minislm may rewrite the files of this folder (re-run, --resume); "
                     "delete this file to protect them"}, indent=1) + "\n")
    return out


def prepare_output(out, command: str, inputs=(), overwrite: bool = False) -> Path:
    """check_output, then mark_output: for a command that starts writing right away."""
    return mark_output(check_output(out, inputs, overwrite), command)


def check_output_file(out, inputs=(), overwrite: bool = False, magic: bytes = b"") -> Path:
    """Refuse an output *file* that is an input or lies in an input folder, and an
    existing non-empty file that does not start with `magic` (so is not an earlier
    output of the same kind) unless `overwrite`."""
    out = Path(out)
    refuse_inputs(out, inputs)
    if out.exists() and not out.is_file():
        raise InputError(f"--out {out} exists and is not a regular file")
    if out.is_file() and not overwrite and out.stat().st_size:
        with open(out, "rb") as f:
            head = f.read(len(magic))
        if not magic or head != magic:
            raise InputError(f"--out {out} already exists and is not a file minislm writes "
                             "here; choose another name, or pass --overwrite")
    return out


def _start_time(pid: int) -> str:
    """When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since boot),
    or '-' where there is no /proc: with the pid it names one process, even after the
    pid of a killed writer has been given to another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "-"
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str) -> bool:
    """Is the process that wrote a lock (pid, start time) still running?"""
    try:
        os.kill(pid, 0)                      # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        pass                                 # exists under another user, or not checkable
    return started == "-" or _start_time(pid) in ("-", started)


@contextlib.contextmanager
def output_lock(out, command: str):
    """Hold `out/minislm.lock` while writing `out`; InputError if another live run holds it.

    The lock is created with O_CREAT | O_EXCL (atomic: of two runs starting at
    once exactly one creates it) and holds the writer's pid and start time; a lock
    left by a process that no longer exists (killed with SIGKILL) is stale: it is
    removed and retaken.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    mine = f"{os.getpid()} {_start_time(os.getpid())} minislm {command}\n"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_or_clear(path, out)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(mine)
        break
    else:
        raise InputError(f"--out {out}: could not take the lock {path}")
    try:
        yield out
    finally:
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8") == mine:     # still ours
                path.unlink()


def _refuse_or_clear(path: Path, out: Path) -> None:
    """An existing lock: InputError if its writer is alive, else remove it (stale)."""
    try:
        age = time.time() - path.stat().st_mtime
        owner = path.read_text(encoding="utf-8", errors="replace").split()
    except FileNotFoundError:
        return                               # released meanwhile: try again
    pid = int(owner[0]) if owner and owner[0].isdigit() else None
    if pid is None and age < 10:             # just created, its pid not written yet
        raise InputError(f"--out {out} is being written by another minislm run (lock {path}); "
                         "wait for it to finish or choose another --out")
    if pid is not None and _alive(pid, owner[1] if len(owner) > 1 else "-"):
        whose = "this process" if pid == os.getpid() else f"another minislm run (pid {pid})"
        raise InputError(f"--out {out} is being written by {whose}, lock {path}; wait for it "
                         "to finish or choose another --out")
    path.unlink(missing_ok=True)             # stale: its writer is gone
