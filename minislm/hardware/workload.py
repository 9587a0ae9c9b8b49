"""What one forward step of a decoder costs before any device is involved: MACs and bytes.

Symbols (legend in minislm/config.py): C d_model, F d_ff, H query heads, K KV heads,
D head dim, V vocab. A *step* appends n new tokens to a KV cache already holding p:
a prefill of a T-token prompt is (p = 0, n = T), one decode step is (p = context, n = 1).

Linear  y[n, out] = x[n, in] W            MACs = n · in · out
                                          weights: the stored bytes of W, read once per step
Attention: query i (1 … n) sees p + i keys, so the step has P = n·p + n(n+1)/2 pairs
    scores S = Q Kᵀ                       MACs = H · D · P        (reads K: K·D·(p+n) values)
    softmax over S                        H · P elements
    output O = softmax(S) V               MACs = H · D · P        (reads V: K·D·(p+n) values)
    the new keys and values are written:  2 · K · D · n values
LM head: only the last position's logits are needed to pick the next token (n_head = 1;
`all_logits` costs all n positions, as a plain forward pass does).

Stored weight bytes, b-bit codes in groups of g input columns (minislm.quant.rtn):
    codes   out · ⌈in · b / 8⌉                               (minislm.model.pack)
    grid    out · (2·⌈in/g⌉ + ⌈⌈in/g⌉·b/8⌉)  bytes           float16 scales + b-bit zeros
            (symmetric: no zeros; g = −1 one group per row; g = 0 one group per matrix)
    EoRA (rank r) adds float32 A [r, in] and B [out, r]: 4·r·(in + out) bytes, n·r·(in + out) MACs
Sparsity s (fraction of exact zeros) is stored as kept values plus a 1-bit mask
(an assumption: for 2:4 this equals the 2-bit index per kept value of N:M formats),
and only when that is smaller than the dense codes:
    code bits = min(N·b,  (1 − s)·N·b + N)
Float weights (b = 16 or 32) have no grid. Norm weights and biases are float32.
Sparsity applies to the linear weights inside the blocks (pruning leaves the
embedding and the LM head dense). The embedding tables and the LM head share
`embedding_bits` (minislm's quantizer keeps both in float; llama.cpp-style
deployments quantize both), which defaults to the weight bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..errors import ConfigError
from ..model.families import expected_shapes, family, linear_layers

FLOAT_BITS = (16, 32)
INT_BITS = (2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class WeightFormat:
    """How the weights are stored: bits, group size, symmetry, sparsity, embedding bits, EoRA rank."""
    bits: int = 32                   # 32/16 float, 2 … 8 integer codes
    group_size: int = 128            # g; −1 per output row, 0 per matrix (ignored for float)
    sym: bool = False                # symmetric grid: no zero points stored
    sparsity: float = 0.0            # s, fraction of zeros in the block linear weights
    embedding_bits: int | None = None    # embedding tables and the LM head (None: = bits)
    eora_rank: int = 0               # r of EoRA's float32 low-rank correction per linear

    def validate(self) -> None:
        """Raise ConfigError for bits, sparsity, group size or EoRA rank it cannot count."""
        for field, bits in (("weight bits", self.bits), ("embedding bits", self.emb_bits)):
            if bits not in FLOAT_BITS + INT_BITS:
                raise ConfigError(f"{field} must be one of {INT_BITS} (integer codes) or "
                                  f"{FLOAT_BITS} (float), found {bits!r}")
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise ConfigError(f"sparsity must be in [0, 1), found {self.sparsity!r}")
        if not isinstance(self.eora_rank, int) or self.eora_rank < 0:
            raise ConfigError(f"eora_rank must be a non-negative integer, found {self.eora_rank!r}")
        if not isinstance(self.group_size, int) or self.group_size < -1:
            raise ConfigError(f"group_size must be a positive integer, -1 (per output row) "
                              f"or 0 (per matrix), found {self.group_size!r}")

    @property
    def emb_bits(self) -> int:
        """Bits of the embedding tables and LM head (`embedding_bits`, else `bits`)."""
        return self.bits if self.embedding_bits is None else self.embedding_bits


@dataclass(frozen=True)
class Op:
    """One kernel of a step: its work and the bytes it moves (no device yet)."""
    layer: str           # "embed", "block 3", "head"
    name: str            # "q", "attn_scores", "softmax", "norm_1", ...
    kind: str            # "linear" | "attention" | "elementwise" | "lookup"
    macs: float = 0.0    # multiply-accumulates (dense count: zeros are multiplied too)
    elements: float = 0.0        # values produced by an elementwise op
    element_kind: str = ""       # "add" | "norm" | "activation" | "softmax" | "rope"
    n_weights: float = 0.0       # dense weight count read by a linear op
    weight_bytes: float = 0.0    # stored bytes of those weights (or of looked-up rows)
    weight_bits: int = 32        # bits of the weight codes (decides engine vs cluster)
    bitmap_sparse: bool = False  # weights stored as kept values + mask
    act_bytes: float = 0.0       # activation bytes read + written
    kv_bytes: float = 0.0        # KV-cache bytes read + written
    tokens: int = 1              # n rows of x
    d_in: int = 0                # linear: input features
    d_out: int = 0               # linear: output features


def matrix_bytes(d_out: int, d_in: int, bits: int, group_size: int = 128, sym: bool = False,
                 sparsity: float = 0.0) -> tuple[float, bool]:
    """(stored bytes of one (out, in) matrix, whether the sparse bitmap format is used)."""
    N = d_out * d_in
    if bits in FLOAT_BITS:
        dense_bits = N * bits
        grid_bytes = 0.0
    else:
        dense_bits = d_out * math.ceil(d_in * bits / 8) * 8
        rows = 1 if group_size == 0 else d_out                 # rows of the grid
        n_groups = 1 if group_size <= 0 else math.ceil(d_in / group_size)
        grid_bytes = rows * (2 * n_groups + (0 if sym else math.ceil(n_groups * bits / 8)))
    sparse_bits = (1.0 - sparsity) * N * bits + N
    use_bitmap = sparsity > 0 and sparse_bits < dense_bits
    return (sparse_bits if use_bitmap else dense_bits) / 8 + grid_bytes, use_bitmap


def parameter_count(config: Config) -> int:
    """Every parameter in a checkpoint of this config (tied weights counted once)."""
    return sum(math.prod(shape) for shape in expected_shapes(config).values())


def stored_weight_bytes(config: Config, fmt: WeightFormat) -> dict:
    """Bytes of the stored model, by part: {'blocks', 'embeddings', 'lm_head', 'norms_biases'}."""
    fmt.validate()
    C, V = config.d_model, config.vocab_size
    blocks = sum(matrix_bytes(lin.d_out, lin.d_in, fmt.bits, fmt.group_size, fmt.sym,
                              fmt.sparsity)[0] + 4.0 * fmt.eora_rank * (lin.d_in + lin.d_out)
                 for lin in linear_layers(config))
    embeddings = matrix_bytes(V, C, fmt.emb_bits, fmt.group_size, fmt.sym)[0]
    if family(config).positions:                               # learned position table
        embeddings += matrix_bytes(config.max_position, C, fmt.emb_bits, fmt.group_size,
                                   fmt.sym)[0]
    lm_head = 0.0 if config.tied else matrix_bytes(V, C, fmt.emb_bits, fmt.group_size,
                                                   fmt.sym)[0]
    matrix_params = sum(lin.d_in * lin.d_out for lin in linear_layers(config, include_lm_head=True))
    matrix_params += V * C if not config.tied else 0          # the untied input embedding
    matrix_params += config.max_position * C if family(config).positions else 0
    small = parameter_count(config) - matrix_params              # norms and biases, float32
    return {"blocks": blocks, "embeddings": embeddings, "lm_head": lm_head,
            "norms_biases": 4.0 * small}


def step_ops(config: Config, fmt: WeightFormat, n: int, p: int, act_bytes: float,
             all_logits: bool = False) -> list[Op]:
    """Every kernel of one step that appends n tokens to a cache holding p (see module doc).

    all_logits: compute the LM head for all n positions (as `minislm.forward` does),
    not only for the last one that generation needs."""
    fmt.validate()
    if n < 1 or p < 0:
        raise ConfigError(f"a step needs n >= 1 new tokens and p >= 0 cached, found n={n}, p={p}")
    C, F, V = config.d_model, config.d_ff, config.vocab_size
    H, K, D = config.n_head, config.n_kv_head, config.head_dim
    a = act_bytes
    fam = family(config)

    def linear(layer, name, d_in, d_out, bits, sparsity, bias, tokens=n, r=0):
        wb, bitmap = matrix_bytes(d_out, d_in, bits, fmt.group_size, fmt.sym, sparsity)
        wb += 4.0 * r * (d_in + d_out) + (4.0 * d_out if bias else 0.0)
        return Op(layer, name, "linear", macs=tokens * (d_in * d_out + r * (d_in + d_out)),
                  n_weights=d_in * d_out, weight_bytes=wb, weight_bits=bits,
                  bitmap_sparse=bitmap, act_bytes=tokens * (d_in + d_out) * a, tokens=tokens,
                  d_in=d_in, d_out=d_out)

    def elementwise(layer, name, kind, count, reads=1, params=0):
        return Op(layer, name, "elementwise", elements=count, element_kind=kind,
                  weight_bytes=4.0 * params, act_bytes=(reads + 1) * count * a, tokens=n)

    emb_bytes = matrix_bytes(V, C, fmt.emb_bits, fmt.group_size, fmt.sym)[0] / V  # one row
    ops = [Op("embed", "token_lookup", "lookup", weight_bytes=n * emb_bytes,
              act_bytes=n * C * a, tokens=n)]
    if fam.positions:
        ops.append(Op("embed", "position_lookup", "lookup", weight_bytes=n * emb_bytes,
                      act_bytes=n * C * a, tokens=n))
        ops.append(elementwise("embed", "add_positions", "add", n * C, reads=2))

    norm_params = 2 * C if fam.layer_norm else C                 # gain (and bias)
    for lin_layer in range(config.n_layer):
        layer = f"block {lin_layer}"
        lins = {lin.role: lin for lin in linear_layers(config) if lin.layer == lin_layer}

        def block_linear(role):
            lin = lins[role]
            return linear(layer, role, lin.d_in, lin.d_out, fmt.bits, fmt.sparsity,
                          lin.bias is not None, r=fmt.eora_rank)

        W = config.window_of_layer(lin_layer)         # sliding window (None: all keys)
        P = attended_pairs(p, n, W)                   # (query, key) pairs of the step
        S = p + n if W is None else min(p + n, W)     # keys the last query reads
        ops.append(elementwise(layer, "norm_1", "norm", n * C, params=norm_params))
        ops += [block_linear(role) for _, role in fam.attention]          # qkv, or q, k, v
        if fam.rope:
            ops.append(elementwise(layer, "rope", "rope", n * (H + K) * D))
        if "q" in fam.norms:                                              # QK-norm
            ops.append(elementwise(layer, "qk_norm", "norm", n * (H + K) * D, params=2 * D))
        kv_read = K * D * S * a
        ops.append(Op(layer, "attn_scores", "attention", macs=H * D * P,
                      act_bytes=(n * H * D + H * P) * a, kv_bytes=kv_read + n * K * D * a,
                      tokens=n))
        ops.append(elementwise(layer, "softmax", "softmax", H * P))
        ops.append(Op(layer, "attn_values", "attention", macs=H * D * P,
                      act_bytes=(H * P + n * H * D) * a, kv_bytes=kv_read + n * K * D * a,
                      tokens=n))
        ops.append(block_linear("o"))
        ops.append(elementwise(layer, "residual_1", "add", n * C, reads=2))
        if "attn_out" in fam.norms:
            ops.append(elementwise(layer, "norm_attn_out", "norm", n * C, params=norm_params))
        ops.append(elementwise(layer, "norm_2", "norm", n * C, params=norm_params))
        ops += [block_linear(role) for _, role in fam.mlp]                # fc, or gate and up
        if len(fam.mlp) == 1:
            ops.append(elementwise(layer, "gelu", "activation", n * F))
        else:                                                             # act(g) ⊙ u
            ops.append(elementwise(layer, "silu_mul", "activation", n * F, reads=2))
        ops.append(block_linear(fam.mlp_out[1]))
        if "mlp_out" in fam.norms:
            ops.append(elementwise(layer, "norm_mlp_out", "norm", n * C, params=norm_params))
        ops.append(elementwise(layer, "residual_2", "add", n * C, reads=2))

    n_head = n if all_logits else 1
    ops.append(Op("head", "norm_f", "elementwise", elements=n_head * C, element_kind="norm",
                  weight_bytes=4.0 * norm_params, act_bytes=2 * n_head * C * a, tokens=n_head))
    ops.append(linear("head", "lm_head", C, V, fmt.emb_bits, 0.0, False, tokens=n_head))
    return ops


def attended_pairs(p: int, n: int, window: int | None) -> float:
    """(query, key) pairs when n new queries at positions p … p+n−1 each see the keys up to
    themselves, or only the last `window` of them: Σ_q min(q + 1, window)."""
    if window is None:
        return n * p + n * (n + 1) / 2
    a, b = p + 1, p + n                         # keys seen by the first and last query, unwindowed
    top = min(b, window)
    below = (top * (top + 1) - (a - 1) * a) / 2 if top >= a else 0.0   # Σ v for v in a … top
    return below + window * max(0, b - max(a - 1, window))


def kv_cache_bytes(config: Config, tokens: int, act_bytes: float) -> float:
    """Keys and values of every layer for `tokens` positions: 2 · L · K · D · tokens · a."""
    return 2.0 * config.n_layer * config.n_kv_head * config.head_dim * tokens * act_bytes


def peak_activation_bytes(config: Config, n: int, p: int, act_bytes: float) -> float:
    """Largest set of live activations in a step of n tokens on a cache of p:
    the residual stream and its normalised copy (2·n·C), the widest hidden
    (q, k, v together, or gate and up together), one layer's attention scores
    (H · P) and the logits of one position (V)."""
    C, F, H, K, D = config.d_model, config.d_ff, config.n_head, config.n_kv_head, config.head_dim
    scores = H * (n * p + n * (n + 1) / 2)
    widest = max((H + 2 * K) * D, 2 * F)
    return act_bytes * (2 * n * C + n * widest + scores + config.vocab_size)
