"""Memory preflight: estimate what a job needs and refuse it before it starts.

A laptop that runs out of memory does not raise an exception: it swaps until
it freezes, or the kernel kills the process (and maybe the user's browser).
So before loading a checkpoint — and before calibrating a compression — minislm
adds up the bytes the job will hold and compares them with the memory that is
available, raising `ResourceError` with the numbers when it does not fit.

What is counted, and why (the accounting is deliberately pessimistic):

  weights      Σ numel × bytes of the in-memory dtype. float32 is 4 bytes, float64 8;
               BF16/F16 tensors on disk are *widened* to float32, which allocates a new
               array per tensor (2 bytes on disk -> 4 in RAM). A float32 file is
               memory-mapped, which costs address space rather than an allocation, but
               its pages are counted too: `load` scans every tensor for NaN/Inf and every
               forward pass reads every weight, so a mapped model larger than RAM would
               thrash the page cache instead of running. Integer tensors (packed
               quantized codes) are counted at their stored size.
  scan         the NaN/Inf scan's temporary: a bool mask of the largest tensor.
  activations  one forward pass over a window of T tokens (B = 1 when loading):
               residual stream and norms ≈ 4·C, q/k/v (H + 2K)·D, MLP 3·F, logits V
               per token, plus the H·T·T attention scores.
  training     per trained number: its working copy, gradient and AdamW's m and v, plus
               AdamW's scratch (≤ one more): 5 copies. The activations every block keeps
               for the backward, per token: residual and norm values ≈ 6·C, q/k/v before
               and after RoPE 2·(H + 2K)·D, MLP 4·F, and the attention probabilities H·T;
               then the logits with their softmax and gradient (3·V), and the
               transient of the backward (one forward pass's worth).
  calibration  the N windows' token ids (N·T int64), their hidden states kept between
               blocks (2 · N·T·C, inputs and outputs of the block being compressed), the
               largest float64 Hessian XᵀX with its Cholesky temporaries (4 · d_in²·8),
               and the activations of one window. Checked before the windows are cut
               from the text, so an absurd --n-samples is refused at once.

What is available: `MINISLM_MEMORY_LIMIT` if set (e.g. "4GB", "512MiB", "1.5G", a
byte count; decimal suffixes are powers of 1000, "iB" ones powers of 1024), else
Linux's MemAvailable from /proc/meminfo, lowered to the cgroup v2 limit
(memory.max − memory.current) inside a container. If neither can be read
(another OS), the check is skipped rather than guessed.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .errors import ConfigError, ResourceError
from .model import families

ENV_VAR = "MINISLM_MEMORY_LIMIT"
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2,
         "g": 1000 ** 3, "gb": 1000 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4,
         "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
DEFAULT_WINDOW = 512           # tokens of the forward pass a freshly loaded model is budgeted for


def parse_size(text: str, where: str = ENV_VAR) -> int:
    """'4GB' -> 4·10⁹, '512MiB' -> 512·2²⁰, '1.5G' -> 1.5·10⁹, '1000' -> 1000 bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in UNITS:
        raise ConfigError(f"{where}: expected a memory size like '4GB', '512MiB' or a number "
                          f"of bytes, found {text!r}")
    value = float(m.group(1)) * UNITS[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: memory size must be positive, found {text!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """n bytes in decimal units for messages, e.g. "1.23 GB" (whole bytes below 1 kB)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> tuple[int | None, str]:
    """(bytes available, where that number comes from); (None, reason) if unknown."""
    if os.environ.get(ENV_VAR):
        return parse_size(os.environ[ENV_VAR]), f"${ENV_VAR}"
    found = [(v, src) for v, src in ((_meminfo_available(), "MemAvailable in /proc/meminfo"),
                                     (_cgroup_available(), "the cgroup memory limit"))
             if v is not None]
    if not found:
        return None, "available memory unknown on this system"
    return min(found)


# ------------------------------------------------------------------------ estimates
def weight_bytes(entries, itemsize: int = 4) -> tuple[int, int]:
    """(bytes of all tensors in memory, elements of the largest) from safetensors header entries.

    Floating tensors count `itemsize` bytes per element (the load dtype), whatever
    their width on disk; integer/bool tensors count their stored width.
    """
    total, largest = 0, 0
    for entry in entries:
        numel = math.prod(entry["shape"])
        floating = entry["dtype"] in ("F64", "F32", "F16", "BF16")
        total += numel * (itemsize if floating else _stored_itemsize(entry["dtype"]))
        largest = max(largest, numel)
    return total, largest


def _stored_itemsize(code: str) -> int:
    from .checkpoint import DTYPES
    return DTYPES[code].itemsize


def parameter_count(config) -> int:
    """Parameters a config describes, in closed form (one block counted, times L, so
    absurd configs cost nothing): embeddings, L blocks, final norm, untied head."""
    fam = families.family(config)
    C, V, L = config.d_model, config.vocab_size, config.n_layer
    per_norm = 2 if fam.layer_norm else 1                                # gain (and bias)
    block = 0
    for _, role, bias in families.block_linears(config):
        d_in, d_out = families.role_shape(config, role)
        block += d_in * d_out + (d_out if bias else 0)
    block += per_norm * sum(math.prod(s) for s in families.norm_shapes(config).values())
    positions = config.max_position * C if fam.positions else 0
    return V * C + positions + L * block + per_norm * C + (0 if config.tied else V * C)


def forward_bytes(config, seqlen: int, batch: int = 1, itemsize: int = 4) -> int:
    """Peak activations of one forward pass over [batch, seqlen] tokens (see module docstring)."""
    C, F, V = config.d_model, config.d_ff, config.vocab_size
    H, K, D = config.n_head, config.n_kv_head, config.head_dim
    per_token = 4 * C + (H + 2 * K) * D + 3 * F + V
    return itemsize * batch * (seqlen * per_token + H * seqlen * seqlen)


def calibration_bytes(config, n_samples: int, seqlen: int, itemsize: int = 4) -> int:
    """Calibration working set: the windows' ids, block inputs/outputs of all windows, a
    Hessian, one forward."""
    d_in = max(config.d_model, config.d_ff, config.n_head * config.head_dim)
    windows = n_samples * seqlen * 8
    hidden = 2 * n_samples * seqlen * config.d_model * itemsize
    hessian = 4 * d_in * d_in * 8
    return windows + hidden + hessian + forward_bytes(config, seqlen, 1, itemsize)


def training_bytes(config, batch: int, seqlen: int, trainable: int,
                   itemsize: int = 4) -> tuple[int, int]:
    """(optimiser bytes, activation bytes) of one training step on resident weights:
    5 copies of the `trainable` numbers, and the activations a [batch, seqlen] step
    keeps for its backward (see module docstring)."""
    C, F, V, L = config.d_model, config.d_ff, config.vocab_size, config.n_layer
    H, K, D = config.n_head, config.n_kv_head, config.head_dim
    per_block = 6 * C + 2 * (H + 2 * K) * D + 4 * F + H * seqlen           # per token
    kept = itemsize * batch * seqlen * (L * per_block + 2 * C + 3 * V)
    activations = kept + forward_bytes(config, seqlen, batch, itemsize)
    return 5 * trainable * itemsize, activations


def require(needed: int, what: str, breakdown: str = "") -> None:
    """Raise ResourceError if `needed` bytes exceed the available memory."""
    available, source = available_memory()
    if available is None or needed <= available:
        return
    detail = f" ({breakdown})" if breakdown else ""
    raise ResourceError(
        f"{what} needs about {format_bytes(needed)} of memory{detail}, but only "
        f"{format_bytes(available)} is available ({source}). Free memory, use a smaller "
        f"model or shorter calibration, or set {ENV_VAR} (e.g. {ENV_VAR}=8GB) if this "
        "estimate is too cautious for your system")


def check_load(folder, config, header_entries, itemsize: int = 4) -> int:
    """Preflight of `minislm.load`: weights + NaN-scan mask + one forward window. Returns bytes."""
    weights, largest = weight_bytes(header_entries, itemsize)
    window = min(config.max_position, DEFAULT_WINDOW)
    activations = forward_bytes(config, window, 1, itemsize)
    needed = weights + largest + activations
    require(needed, f"loading {folder}",
            f"{format_bytes(weights)} of {'float32' if itemsize == 4 else f'{8 * itemsize}-bit'}"
            f" weights, {format_bytes(largest)} NaN-scan mask, {format_bytes(activations)} "
            f"activations of a {window}-token forward pass")
    return needed


def check_calibration(model, n_samples: int, seqlen: int) -> int:
    """Preflight of a calibration run (GPTQ, AWQ, WANDA, …) on an already loaded model.

    The weights are already resident, so only the extra working set is compared
    with what is still available.
    """
    import numpy as np
    itemsize = np.dtype(model.dtype).itemsize
    needed = calibration_bytes(model.config, n_samples, seqlen, itemsize)
    require(needed, f"calibrating on {n_samples} windows of {seqlen} tokens",
            "token ids and hidden states of every window, a float64 Hessian, one forward "
            "pass")
    return needed


def check_training(model, batch_size: int, seqlen: int, trainable, extra: int = 0,
                   what: str = "training") -> int:
    """Preflight of training / fine-tuning / distillation on a loaded model, before any step:
    the optimiser's copies of the `trainable` tensors (a dict of arrays) and the
    activations of a [batch_size, seqlen] step, plus `extra` bytes. Returns bytes."""
    import numpy as np
    itemsize = np.dtype(model.dtype).itemsize
    n = sum(int(np.size(v)) for v in trainable.values())
    optimiser, activations = training_bytes(model.config, batch_size, seqlen, n, itemsize)
    needed = optimiser + activations + extra
    require(needed, f"{what} with batches of {batch_size} × {seqlen} tokens",
            f"{format_bytes(optimiser)} for the weights' copies, gradients and AdamW moments, "
            f"{format_bytes(activations + extra)} of activations kept for the backward; "
            "lower the batch size or the sequence length")
    return needed
