"""What the benchmark scripts share: paths, peak memory, and scratch folders that
are removed when the script exits (a GPT-2-124M folder is 0.5 GB, LLaMA-1B 5 GB)."""
from __future__ import annotations

import atexit
import os
import resource
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MINISLM_DATA", REPO.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder, deleted when the interpreter exits (also after an error)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder
