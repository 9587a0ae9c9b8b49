"""A quantized linear weight: packed integer codes in memory, dequantized block by
block inside the matmul — and the on-disk format that stores it.

It lives in the model core (not in `quant/`, which makes these tensors) because
loading a quantized checkpoint and running it need no quantization technique:
`loading.py` and `hardware/` read this format without importing `quant/`.

In memory (`QuantizedTensor`, always the (out, in) layout internally):

    qweight      uint8   [out, ⌈in·b/8⌉]       codes, b-bit little-endian stream per row (pack.py)
    scales       float16 [R, n_groups]          R = out, or 1 for per-tensor
    zeros        uint8   [R, ⌈n_groups·b/8⌉]    packed zero points; absent when sym (z = 2^(b−1))
    mins         float16 [R, n_groups]          instead of zeros: ŵ = s · q + lo (Q4_1's grid)
    input_scale  float32 [in]                   AWQ: y = (x / s) Ŵᵀ (optional)
    eora_A, eora_B float32 [r, in], [out, r]    EoRA: y += (x Aᵀ) Bᵀ (optional)

    y = x Ŵᵀ,  Ŵ[rows] = s · (q − z)  (or s · q + lo)  computed for `block_rows` output rows at a time,
so at most one block of float weights exists at once; the model's memory at rest
is the packed bytes (`nbytes`). For a few tokens (decoding) the codes are
multiplied first and each group's scale applied to its partial dot product
(`group_dot_rows`), which skips two elementwise passes over the weights. A
quantized token embedding (optional) answers `table[ids]` by dequantizing just
those rows.

On disk (safetensors, beside the float tensors): for a weight named `<m>.weight`
the tensors `<m>.qweight`, `<m>.scales`, `<m>.zeros` (asymmetric only), `<m>.mins`,
`<m>.input_scale` (AWQ), `<m>.eora_A`, `<m>.eora_B` (EoRA); `config.json` carries

    "quantization_config": {"quant_method": "minislm", "bits": b, "group_size": g,
                            "sym": bool, "method": "rtn"|"gptq"|"awq", "layout": "out_in",
                            "packing": "lsb-first bit stream per row", ...}

(method "nf4" stores NF4 weights instead: `minislm.model.nf4.NF4Tensor`, with its own parts.)

`dequantize()` returns the weight in the *checkpoint's* layout ((in, out) for
GPT-2 Conv1D), so code that wants a float weight sees what the float model had.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import CheckpointError, InputError
from . import families, nf4
from .pack import pack_bits, packed_row_bytes, unpack_bits, unpack_float

PER_CHANNEL = -1                  # group_size: one (s, z) per output row
PER_TENSOR = 0                    # group_size: one (s, z) for the whole matrix
QUANT_METHOD = "minislm"
PARTS = ("qweight", "scales", "zeros", "input_scale", "eora_A", "eora_B", "mins")
BLOCK_FLOATS = 1 << 20            # float weights dequantized at once (4 MB in float32)
GROUP_DOT_TOKENS = 8              # up to this many input rows `linear` scales after the dot


def group_bounds(n_in: int, group_size: int) -> list[tuple[int, int]]:
    """[(start, stop)] of the column groups: one group for per-channel/per-tensor."""
    if group_size in (PER_CHANNEL, PER_TENSOR) or group_size >= n_in:
        return [(0, n_in)]
    return [(j, min(j + group_size, n_in)) for j in range(0, n_in, group_size)]


@dataclass(eq=False)
class QuantizedTensor:
    """A packed b-bit weight; a `minislm.model.weights.StoredWeight`."""
    qweight: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    bits: int
    group_size: int
    n_out: int
    n_in: int
    orientation: str                          # checkpoint layout: "in_out" or "out_in"
    input_scale: np.ndarray | None = None
    eora_A: np.ndarray | None = None
    eora_B: np.ndarray | None = None
    mins: np.ndarray | None = None            # float16 [R, n_groups] (Q4_1's grid), zeros None

    dtype = np.dtype(np.float32)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_matrix(cls, qm, orientation: str, input_scale=None,
                    eora_A=None, eora_B=None) -> "QuantizedTensor":
        """Pack the codes and grid of an (out, in) weight (a `quant.rtn.QuantizedMatrix`:
        q, scales, zeros, bits, group_size, sym)."""
        n_out, n_in = qm.q.shape
        zeros = None if qm.sym or qm.mins is not None else pack_bits(qm.zeros, qm.bits)
        return cls(pack_bits(qm.q, qm.bits), qm.scales.astype(np.float16), zeros, qm.bits,
                   qm.group_size, n_out, n_in, orientation,
                   None if input_scale is None else np.asarray(input_scale, np.float32),
                   None if eora_A is None else np.asarray(eora_A, np.float32),
                   None if eora_B is None else np.asarray(eora_B, np.float32),
                   None if qm.mins is None else qm.mins.astype(np.float16))

    # ------------------------------------------------------------- array-like
    @property
    def shape(self) -> tuple[int, int]:
        """The weight's shape in the checkpoint's layout ((in, out) for Conv1D, else (out, in))."""
        return (self.n_in, self.n_out) if self.orientation == "in_out" else (self.n_out, self.n_in)

    @property
    def sym(self) -> bool:
        """Whether the grid is symmetric (no zero points, no mins: z = 2^(b−1))."""
        return self.zeros is None and self.mins is None

    @property
    def nbytes(self) -> int:
        """Exact bytes held in memory (and written to disk) for this weight."""
        return sum(a.nbytes for a in (self.qweight, self.scales, self.zeros, self.input_scale,
                                      self.eora_A, self.eora_B, self.mins) if a is not None)

    def _uniform_group(self) -> int | None:
        """The group width g when every group has g columns (one group counts), else None."""
        g = self.group_size
        g = self.n_in if g in (PER_TENSOR, -1) or g >= self.n_in else g
        return g if self.n_in % g == 0 else None

    def _grid(self, rows):
        """Scales s and offsets o of some rows (a slice or an index array), ŵ = s · q + o,
        as float32 [rows | 1, n_groups]: o = −s · z, or the stored minimum lo. One row when
        the grid is per tensor. (s · q − s · z = s · (q − z) exactly: fp16 s times a code.)"""
        s = self.scales[slice(0, 1) if self.scales.shape[0] == 1 else rows].astype(np.float32)
        if self.mins is not None:
            return s, self.mins[slice(0, 1) if self.mins.shape[0] == 1 else rows].astype(
                np.float32)
        if self.zeros is None:
            return s, s * np.float32(-(2 ** (self.bits - 1)))
        zrows = slice(0, 1) if self.zeros.shape[0] == 1 else rows
        return s, -s * unpack_bits(self.zeros[zrows], self.bits, s.shape[1]).astype(np.float32)

    def codes(self) -> np.ndarray:
        """The codes q as uint8 [out, in]."""
        return unpack_bits(self.qweight, self.bits, self.n_in)

    def _dequantize(self, packed: np.ndarray, rows) -> np.ndarray:
        """Ŵ = s · q + o as float32 [len(packed), in] for the packed codes of `rows`."""
        W = unpack_float(packed, self.bits, self.n_in)                      # q [rows, in]
        s, o = self._grid(rows)                                             # [rows|1, n_groups]
        g = self._uniform_group()
        if g is not None:
            Wg = W.reshape(W.shape[0], self.n_in // g, g)                   # [rows, groups, g]
            Wg *= s[:, :, None]
            Wg += o[:, :, None]
            return W
        for gi, (a, b) in enumerate(group_bounds(self.n_in, self.group_size)):   # ragged
            W[:, a:b] = W[:, a:b] * s[:, gi:gi + 1] + o[:, gi:gi + 1]
        return W

    def dequantize_rows(self, r0: int, r1: int) -> np.ndarray:
        """Ŵ[r0:r1] = s · q + o as float32 [r1 − r0, in] (without AWQ/EoRA terms)."""
        return self._dequantize(self.qweight[r0:r1], slice(r0, r1))

    def group_dot_rows(self, xs: np.ndarray, r0: int, r1: int) -> np.ndarray:
        """xs Ŵ[r0:r1]ᵀ for xs [N, in] with the grid applied after the dot, group by group:

            y[n, r] = Σ_g s[r, g] · (Σ_{i∈g} q[r, i] x[n, i])  +  Σ_g o[r, g] X[n, g],
            X[n, g] = Σ_{i∈g} x[n, i]           (o = −s · z, or the minimum lo)

        — how integer kernels (llama.cpp's Q4 dot products) work. The codes are
        never shifted or scaled element by element; for a few tokens (decode) this
        is 2.3× faster than dequantizing first. Needs equal-width groups.
        """
        g = self._uniform_group()
        N, G = xs.shape[0], self.n_in // g
        q = unpack_float(self.qweight[r0:r1], self.bits, self.n_in)         # [rows, in]
        s, o = self._grid(slice(r0, r1))
        s = np.broadcast_to(s, (r1 - r0, G))
        o = np.broadcast_to(o, (r1 - r0, G))
        xg = xs.reshape(N, G, g)                                            # [N, G, g]
        P = q.reshape(r1 - r0, G, g).transpose(1, 0, 2) @ xg.transpose(1, 2, 0)  # [G, rows, N]
        y = np.einsum("gon,og->no", P, s)                                   # [N, rows]
        y += xg.sum(-1) @ o.T                                               # [N, G] @ [G, rows]
        return y

    def effective_out_in(self) -> np.ndarray:
        """The float weight this tensor computes with, (out, in): Ŵ / s + B A."""
        W = self.dequantize_rows(0, self.n_out)
        if self.input_scale is not None:
            W = W / self.input_scale
        if self.eora_A is not None:
            W = W + self.eora_B @ self.eora_A
        return W

    def dequantize(self) -> np.ndarray:
        """Float32 weight in the checkpoint layout."""
        W = self.effective_out_in()
        return np.ascontiguousarray(W.T) if self.orientation == "in_out" else W

    def __getitem__(self, ids) -> np.ndarray:
        """Rows Ŵ[ids] as float32 [*ids.shape, in]: an embedding lookup on a quantized table
        (the (V, C) token embedding is an (out, in) matrix with one row per token)."""
        if self.orientation != "out_in" or self.input_scale is not None or \
                self.eora_A is not None:
            raise InputError("row lookup needs a plain (out, in) quantized table (an embedding)")
        idx = np.asarray(ids)
        flat = idx.reshape(-1)
        W = self._dequantize(self.qweight[flat], flat)                       # [N, in]
        return W.reshape(*idx.shape, self.n_in)

    def linear(self, x: np.ndarray) -> np.ndarray:
        """y = x Ŵᵀ for x [..., in] -> [..., out], `block_rows` output rows at a time:
        dequantized then multiplied, or for ≤ GROUP_DOT_TOKENS rows (decoding) the
        codes multiplied and the grid applied per group (`group_dot_rows`)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n_in)                                        # [N, in]
        xs = x2 / self.input_scale if self.input_scale is not None else x2
        y = np.empty((x2.shape[0], self.n_out), dtype=np.result_type(x.dtype, np.float32))
        block_rows = max(1, BLOCK_FLOATS // self.n_in)
        few = x2.shape[0] <= GROUP_DOT_TOKENS and self._uniform_group() is not None
        for r0 in range(0, self.n_out, block_rows):
            r1 = min(r0 + block_rows, self.n_out)
            y[:, r0:r1] = self.group_dot_rows(xs, r0, r1) if few else \
                xs @ self.dequantize_rows(r0, r1).T                          # [N, rows]
        if self.eora_A is not None:
            y += (x2 @ self.eora_A.T) @ self.eora_B.T                        # low-rank EoRA term
        return y.reshape(*lead, self.n_out)

    def linear_backward(self, x: np.ndarray, dy: np.ndarray):
        """(∂L/∂x, {}) for y = (x / s) Ŵᵀ + x Aᵀ Bᵀ, with dy = ∂L/∂y [..., out].

            ∂L/∂x = (dy Ŵ) / s + dy B A

        Ŵ is dequantized `block_rows` rows at a time, as in `linear`. The codes,
        scales and the EoRA term are frozen: no gradient is returned for them (the
        empty dict), so QLoRA can leave some quantized linears without an adapter.
        """
        dy2 = dy.reshape(-1, self.n_out)                                     # [N, out]
        dx = np.zeros((dy2.shape[0], self.n_in), dtype=np.result_type(dy.dtype, np.float32))
        block_rows = max(1, BLOCK_FLOATS // self.n_in)
        for r0 in range(0, self.n_out, block_rows):
            r1 = min(r0 + block_rows, self.n_out)
            dx += dy2[:, r0:r1] @ self.dequantize_rows(r0, r1)               # [N, in]
        if self.input_scale is not None:
            dx /= self.input_scale
        if self.eora_A is not None:
            dx += (dy2 @ self.eora_B) @ self.eora_A
        return dx.reshape(*dy.shape[:-1], self.n_in), {}

    # ----------------------------------------------------------------- storage
    def state_dict(self, name: str) -> dict[str, np.ndarray]:
        """Tensors to write for the weight `name` (`<m>.weight` -> `<m>.qweight`, ...)."""
        base = module_name(name)
        parts = {"qweight": self.qweight, "scales": self.scales, "zeros": self.zeros,
                 "mins": self.mins, "input_scale": self.input_scale, "eora_A": self.eora_A,
                 "eora_B": self.eora_B}
        return {f"{base}.{k}": v for k, v in parts.items() if v is not None}


def module_name(weight_name: str) -> str:
    """"<m>.weight" -> "<m>" (a name without ".weight" is returned unchanged)."""
    return weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name


def quantization_config(bits: int, group_size: int, sym: bool, method: str, **extra) -> dict:
    """The `quantization_config` entry of config.json for minislm's packed format."""
    return {"quant_method": QUANT_METHOD, "bits": int(bits), "group_size": int(group_size),
            "sym": bool(sym), "method": method, "layout": "out_in",
            "packing": "lsb-first bit stream per row", "scale_dtype": "float16",
            "zero_point": "absent when sym (z = 2^(bits-1)); else packed like qweight", **extra}


def load_quantized(config_dict: dict, tensors: dict) -> dict:
    """Replace the `<m>.qweight`, `.scales`, ... tensors by one `QuantizedTensor` at `<m>.weight`.

    Called by `minislm.load` when config.json has quant_method "minislm". Every
    quantized weight is checked against the family's table of linear layers. With
    method "nf4" the parts are NF4's (`nf4.NF4Tensor`, group_size = its block size).
    """
    qc = config_dict.get("quantization_config", {})
    try:
        bits, group_size = int(qc["bits"]), int(qc["group_size"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("config.json: quantization_config needs integer 'bits' and "
                              f"'group_size', found {qc!r}") from None
    config = Config.from_hf_dict(config_dict)
    is_nf4 = qc.get("method") == "nf4"              # the NF4 code and its own parts (nf4.py)
    if is_nf4 and bits != 4:
        raise CheckpointError(f"config.json: quantization_config method 'nf4' is 4-bit, found "
                              f"bits {bits}")
    part_names = nf4.PARTS if is_nf4 else PARTS
    names = [n for n in tensors if not n.endswith(tuple(f".{p}" for p in part_names[1:]))]
    prefix = families.detect_prefix(config, names)
    table = {lin.name: lin for lin in families.linear_layers(config, prefix, include_lm_head=True)}
    emb = families.embedding_name(config, prefix)          # quantized with --embeddings
    table.setdefault(emb, families.Linear(emb, None, "embedding", None, "out_in",
                                          config.d_model, config.vocab_size))
    out = dict(tensors)
    for name in [n for n in tensors if n.endswith(".qweight")]:
        base = name[: -len(".qweight")]
        weight = f"{base}.weight"
        lin = table.get(weight)
        if lin is None:
            raise CheckpointError(f"tensor '{name}': '{weight}' is not a linear layer of this "
                                  f"{config.family} config")
        if is_nf4:
            parts = {p: out.pop(f"{base}.{p}", None) for p in nf4.PARTS}
            out[weight] = nf4.from_parts(base, parts, group_size, lin.d_out, lin.d_in,
                                         lin.orientation)
            continue
        parts = {p: out.pop(f"{base}.{p}", None) for p in PARTS}
        n_groups = len(group_bounds(lin.d_in, group_size))
        R = 1 if group_size == PER_TENSOR else lin.d_out
        want = {"qweight": (lin.d_out, packed_row_bytes(lin.d_in, bits)),
                "scales": (R, n_groups),
                "zeros": (R, packed_row_bytes(n_groups, bits)),
                "mins": (R, n_groups),
                "input_scale": (lin.d_in,)}
        for p, shape in want.items():
            a = parts[p]
            if a is not None and tuple(a.shape) != shape:
                raise CheckpointError(f"tensor '{base}.{p}' has shape {tuple(a.shape)}, expected "
                                      f"{shape} for {bits}-bit, group_size {group_size}")
        if parts["scales"] is None:
            raise CheckpointError(f"tensor '{base}.scales' is missing (needed by '{name}')")
        if parts["zeros"] is not None and parts["mins"] is not None:
            raise CheckpointError(f"tensors '{base}.zeros' and '{base}.mins' are two grids; "
                                  "a weight has at most one")
        if (parts["zeros"] is None and parts["mins"] is None) != bool(qc.get("sym", False)):
            raise CheckpointError(f"tensor '{base}.zeros' (or '.mins') must be present exactly "
                                  f"when quantization_config.sym is false (sym = {qc.get('sym')})")
        A, B = parts["eora_A"], parts["eora_B"]
        if (A is None) != (B is None) or (A is not None and (
                A.shape[1] != lin.d_in or B.shape != (lin.d_out, A.shape[0]))):
            raise CheckpointError(f"tensors '{base}.eora_A/B' must both be present with shapes "
                                  f"(r, {lin.d_in}) and ({lin.d_out}, r)")
        out[weight] = QuantizedTensor(
            np.asarray(parts["qweight"], np.uint8), np.asarray(parts["scales"]).astype(np.float16),
            None if parts["zeros"] is None else np.asarray(parts["zeros"], np.uint8),
            bits, group_size, lin.d_out, lin.d_in, lin.orientation,
            None if parts["input_scale"] is None else np.asarray(parts["input_scale"], np.float32),
            None if A is None else np.asarray(A, np.float32),
            None if B is None else np.asarray(B, np.float32),
            None if parts["mins"] is None else np.asarray(parts["mins"]).astype(np.float16))
    return out
