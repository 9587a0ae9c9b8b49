"""Fetch one GGUF file from a Hugging Face Hub repository (`minislm download REPO --file X.gguf`).

GGUF repositories hold many files (one per quantization), so exactly one is requested.
As for folders (`minislm.download`), the revision is resolved to a commit first and
pinned, the file's size is checked against what the Hub reports, and the file lands
under a `.partial` name that is renamed into place only once verified.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import CheckpointError, InputError


def download_gguf(repo_id: str, filename: str, revision: str | None = None,
                  out_dir="weights") -> Path:
    """out_dir/<owner--repo>/<filename>, downloaded and verified."""
    from huggingface_hub import HfApi, hf_hub_download
    if not filename.lower().endswith(".gguf") or Path(filename).is_absolute() or \
            ".." in Path(filename).parts:
        raise InputError(f"--file must name a .gguf file inside the repository, found "
                         f"{filename!r}")
    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    if filename not in sizes:
        found = sorted(n for n in sizes if n.lower().endswith(".gguf"))
        raise CheckpointError(f"{repo_id}@{info.sha}: no file '{filename}' (GGUF files in the "
                              f"repository: {found[:10] or 'none'})")
    folder = Path(out_dir) / repo_id.replace("/", "--")
    partial = folder / ".partial"
    local = Path(hf_hub_download(repo_id, filename, revision=info.sha, local_dir=str(partial)))
    size = local.stat().st_size if local.exists() else None
    if size is None or (sizes[filename] is not None and size != sizes[filename]):
        raise CheckpointError(f"{repo_id}@{info.sha}: file '{filename}' has {size} bytes after "
                              f"download, the hub reports {sizes[filename]}")
    target = folder / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(local, target)
    shutil.rmtree(partial, ignore_errors=True)      # huggingface_hub's bookkeeping
    return target
