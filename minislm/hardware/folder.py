"""Read what the cost model needs from an HF checkpoint folder: shapes, bits, sparsity.

  * shapes: `config.json` through `Config.from_file`;
  * bits: `config.json["quantization_config"]` when written by minislm
    (`{"quant_method": "minislm", "bits": b, "group_size": g, "sym": ...}`), else
    the float width of the stored linear weights (F32 -> 32, F16/BF16 -> 16);
  * sparsity: the fraction of exact zeros in the linear weights of the blocks,
    s = Σ #(Ŵ == 0) / Σ #Ŵ, read one tensor at a time (memory-mapped). Float
    weights are compared with 0; minislm's packed codes are zero where s·(q − z) = 0,
    i.e. q = z (or a zero scale), counted block by block with `QuantizedTensor`.
Codes that merely round to 0 count as zeros too: a bitmap format could skip them,
so this is the right number for storage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import checkpoint_files, read_header, read_safetensors
from ..config import Config
from ..errors import CheckpointError, ConfigError
from ..model.families import detect_prefix, embedding_name, linear_layers
from ..model.nf4 import PARTS as NF4_PARTS
from ..model.nf4 import from_parts as nf4_from_parts
from ..model.quantized import QuantizedTensor

FLOAT_CODES = {"F64": 32, "F32": 32, "F16": 16, "BF16": 16}


def read_model_folder(path, measure_sparsity: bool = True) -> dict:
    """{'config', 'weight_bits', 'embedding_bits', 'group_size', 'sym', 'eora_rank',
    'sparsity', 'notes'} of a folder. minislm's quantizer keeps embeddings, norms and
    the LM head in float (`quantization_config.lm_head` false), so the embedding bits
    are the stored width of the embedding tensor."""
    folder = Path(path)
    config = Config.from_file(folder / "config.json")
    notes = []
    headers = {p: read_header(p)[0] for p in checkpoint_files(folder)}
    names = {name for header in headers.values() for name in header}
    prefix = detect_prefix(config, names)
    linear_names = {lin.name for lin in linear_layers(config, prefix)}

    stored_bits = sorted({FLOAT_CODES[h[n]["dtype"]] for h in headers.values() for n in h
                          if n in linear_names and h[n]["dtype"] in FLOAT_CODES})
    weight_bits = stored_bits[-1] if stored_bits else 32
    emb_name = embedding_name(config, prefix)
    emb_codes = [h[emb_name]["dtype"] for h in headers.values() if emb_name in h]
    embedding_bits = FLOAT_CODES.get(emb_codes[0], 32) if emb_codes else weight_bits
    group_size, sym, eora_rank = 128, False, 0
    qc = config.raw.get("quantization_config")
    if isinstance(qc, dict) and qc.get("quant_method") == "minislm":
        try:
            weight_bits = int(qc["bits"])
            group_size = int(qc.get("group_size", 128))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{folder / 'config.json'}: quantization_config needs an integer "
                              f"'bits' (and 'group_size'), found {qc!r}") from None
        sym = bool(qc.get("sym", False))
        eora_rank = int(qc.get("eora_rank") or 0)
        if qc.get("lm_head"):
            embedding_bits = weight_bits
        notes.append(f"bits {weight_bits}, group {group_size}"
                     + (f", EoRA rank {eora_rank}" if eora_rank else "")
                     + f" from quantization_config; embeddings {embedding_bits}-bit")
    elif isinstance(qc, dict):
        notes.append(f"quantization_config with quant_method {qc.get('quant_method')!r} is "
                     f"not minislm's: weights costed at the stored width {weight_bits} bits")

    sparsity = 0.0
    if measure_sparsity:
        file_of = {name: file for file, header in headers.items() for name in header}
        zeros = total = 0
        for lin in linear_layers(config, prefix):
            stored = headers[file_of[lin.name]][lin.name]["dtype"] if lin.name in file_of else None
            if stored in FLOAT_CODES:
                W = read_safetensors(file_of[lin.name], names={lin.name})[lin.name]
                zeros, total = zeros + int(np.count_nonzero(W == 0)), total + W.size
            elif lin.name[: -len("weight")] + "qweight" in file_of:
                z, n = _packed_zeros(lin, file_of, weight_bits, group_size,
                                     nf4=isinstance(qc, dict) and qc.get("method") == "nf4")
                zeros, total = zeros + z, total + n
        if total:
            sparsity = zeros / total
            notes.append(f"sparsity {sparsity:.4f} measured: exact zeros in {total:,} "
                         "linear weights")
        else:
            notes.append("no linear weights found to measure sparsity from: sparsity 0")
    return {"config": config, "weight_bits": weight_bits, "embedding_bits": embedding_bits,
            "group_size": group_size, "sym": sym, "eora_rank": eora_rank,
            "sparsity": sparsity, "notes": notes}


def _packed_zeros(lin, file_of: dict, bits: int, group_size: int,
                  nf4: bool = False) -> tuple[int, int]:
    """(#zeros, #weights) of one packed minislm weight: Ŵ = s·(q − z) == 0 (s·q + lo with
    Q4_1's fp16 minimums, or an NF4 code of 0), by row blocks."""
    base = lin.name[: -len("weight")]
    parts = {}
    for part in NF4_PARTS if nf4 else ("qweight", "scales", "zeros", "mins"):
        name = base + part
        if name in file_of:
            parts[part] = read_safetensors(file_of[name], names={name})[name]
    if nf4:
        Q = nf4_from_parts(base[:-1], parts, group_size, lin.d_out, lin.d_in, lin.orientation)
    elif "scales" not in parts:
        raise CheckpointError(f"tensor '{base}scales' is missing (needed by '{base}qweight')")
    else:
        Q = QuantizedTensor(np.asarray(parts["qweight"], np.uint8),
                            np.asarray(parts["scales"]).astype(np.float16),
                            None if "zeros" not in parts else np.asarray(parts["zeros"], np.uint8),
                            bits, group_size, lin.d_out, lin.d_in, lin.orientation,
                            mins=None if "mins" not in parts else
                            np.asarray(parts["mins"]).astype(np.float16))
    rows = max(1, (1 << 20) // lin.d_in)
    zeros = sum(int(np.count_nonzero(Q.dequantize_rows(r, min(r + rows, lin.d_out)) == 0))
                for r in range(0, lin.d_out, rows))
    return zeros, lin.d_out * lin.d_in
