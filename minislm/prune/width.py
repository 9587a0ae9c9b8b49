"""Width trimming (Minitron-style): drop attention heads, MLP neurons and
embedding channels, and physically slice the weights so the model is smaller.

Importance from activations on calibration text, in one of two formulas
(`importance=`; both from one forward pass over the calibration windows
[B, T], reading the inputs of the linears through `forward`'s observer):

"minitron" (default) — Muralidharan et al. 2024, "Compact Language Models via
Pruning and Knowledge Distillation" §2.2 with the aggregation the paper found
best (Table 11: mean over the sequence, then L2 norm over the batch):

    head h          F_h = ‖ mean_t ‖O_bt,h‖₂ ‖₂,b     O_h [B, T, D] the head's attention
                                                      output (the input of o_proj / c_proj)
    MLP neuron j    F_j = ‖ mean_t |A_bt,j| ‖₂,b      A [B, T, F] the MLP intermediate
                                                      activation (the input of down / c_proj)
    channel c       F_c = Σ_norms ‖ mean_t |N_bt,c| ‖₂,b   N [B, T, C] every norm's output
                                                      (attention, MLP and final norm)

"voice-thesis" — the voice-assistant thesis §5.4.1 (its equations for heads and
neurons; ‖·‖₂ over batch and sequence unless a dimension is named):

    head h          F_h = ‖A_q,h‖₂ + ‖A_k,h‖₂ + ‖A_v,h‖₂    A_q,h = N W_q,hᵀ (+ b) [B, T, D]
                                                       (k and v of the KV head h reads)
    MLP neuron j    F_j = (1/T) Σ_t ‖A_t,j‖₂,b       A = N W_gateᵀ (+ b), the gate projection
                                                       output (GPT-2, without a gate: c_fc's)
    channel c       F_c = Σ_norms ‖N_c‖₂            the thesis gives no formula for
                                                       channels (its figure only); this uses
                                                       the L2 over batch and sequence of its
                                                       head formula, summed over the norms

Until issue 13 minislm used a mix of the two (the thesis' heads, but neurons
and channels as L2 over all tokens of the MLP intermediate and norm outputs),
which is neither; the default is now Minitron's.

GQA (LLaMA): H query heads share K KV heads in groups of G = H/K. A KV group is
kept or dropped whole, with its K/V rows, by the sum of its query heads' scores;
query heads are ranked inside their group (Minitron). Keeping H' heads keeps all
K groups with H'/K heads each when K divides H', else drops whole groups
(H' = K'·G). GPT-2 has one head per group.

The result is an ordinary checkpoint of a smaller config: the rows/columns of
every tensor are sliced (embeddings and LM head lose columns, q/k/v/o lose the
rows/columns of dropped heads, the MLP loses neurons). GPT-2 ties the width to
the heads (n_embd = n_head · head_dim), so there heads and hidden are trimmed
together: 768 → 384 channels is 12 → 6 heads of 64 (the GPT-2 slides' trim).
Trimming channels changes the LayerNorm/RMSNorm statistics (mean over fewer
channels), so unlike depth pruning nothing here is exact: expect to fine-tune.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from tqdm.auto import tqdm

from .. import calibration
from ..errors import ConfigError
from ..model import families
from ..model.forward import forward
from ..model.layers import linear

IMPORTANCE = ("minitron", "voice-thesis")


@dataclasses.dataclass
class WidthImportance:
    """Importance of each query head [L, H], MLP neuron [L, F] and embedding channel [C]."""
    heads: np.ndarray      # [L, H]  per query head
    neurons: np.ndarray    # [L, F]  per MLP neuron
    channels: np.ndarray   # [C]     per embedding channel, summed over the norms
    method: str = "minitron"

    def groups(self, G: int) -> np.ndarray:
        """[L, K] importance of whole KV groups: the sum of their query heads' scores."""
        L, H = self.heads.shape
        return self.heads.reshape(L, H // G, G).sum(-1)


def _qkv(model, i):
    """W_q [H·D, C], W_k, W_v [K·D, C] and biases of block i, as [out, in] views
    (GPT-2's fused c_attn is cut into its three row ranges)."""
    cfg, P = model.config, model.params
    fam = families.family(cfg)
    p = families.block_prefix(cfg, model.prefix, i)
    mats = []
    for module, _ in fam.attention:
        W = P[f"{p}{module}.weight"]
        mats.append((W.T if fam.orientation == "in_out" else W, P.get(f"{p}{module}.bias")))
    if len(mats) == 3:
        return mats
    (W, b), HD, KD = mats[0], cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    cuts = ((0, HD), (HD, HD + KD), (HD + KD, HD + 2 * KD))                 # q | k | v
    return [(W[lo:hi], None if b is None else b[lo:hi]) for lo, hi in cuts]


def _mean_t_sq_b(a: np.ndarray) -> np.ndarray:
    """Σ_b (mean_t a_bt)² [n] for a [B, T, n]: Minitron's aggregation, before the root."""
    m = a.mean(axis=1, dtype=np.float64)                                    # [B, n]
    return (m * m).sum(0)


def _sq_bt(a: np.ndarray) -> np.ndarray:
    """Σ_b,t a_bt² [n] for a [B, T, n]."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    return (a * a).sum(0)


def _read_inputs(model) -> dict:
    """{linear name: (what its input is, layer, Linear)} for the inputs the scores read."""
    what = {"o": "attn_out", "proj": "mlp_hidden", "down": "mlp_hidden",       # GPT-2, LLaMA
            "qkv": "attn_norm", "q": "attn_norm", "fc": "mlp_norm", "gate": "mlp_norm",
            "lm_head": "final_norm"}
    return {lin.name: (what[lin.role], lin.layer, lin)
            for lin in families.linear_layers(model.config, model.prefix, include_lm_head=True)
            if lin.role in what}


def _minitron(model):
    """(observer, result) accumulating Minitron's sums Σ_b (mean_t ·)²."""
    cfg = model.config
    reads = _read_inputs(model)
    heads = np.zeros((cfg.n_layer, cfg.n_head))
    neurons = np.zeros((cfg.n_layer, cfg.d_ff))
    channels = {}                                                            # norm -> [C]

    def observe(name, x):                                                    # x [B, T, in]
        what, i, _ = reads.get(name, (None, None, None))
        B, T, _ = x.shape
        if what == "attn_out":
            O = x.reshape(B, T, cfg.n_head, cfg.head_dim)                    # [B, T, H, D]
            heads[i] += _mean_t_sq_b(np.sqrt((O * O).sum(-1)))              # ‖O_bt,h‖₂ over D
        elif what == "mlp_hidden":
            neurons[i] += _mean_t_sq_b(np.abs(x))                            # A [B, T, F]
        elif what is not None:                                               # a norm's output
            channels[name] = channels.get(name, 0.0) + _mean_t_sq_b(np.abs(x))

    def result():
        return WidthImportance(np.sqrt(heads), np.sqrt(neurons),
                               sum(np.sqrt(c) for c in channels.values()), "minitron")
    return observe, result


def _voice_thesis(model):
    """(observer, result) accumulating the voice thesis' sums of squares."""
    cfg, P = model.config, model.params
    reads = _read_inputs(model)
    qkv = [np.zeros((cfg.n_layer, n)) for n in (cfg.n_head, cfg.n_kv_head, cfg.n_kv_head)]
    gate = [np.zeros((0, cfg.d_ff)) for _ in range(cfg.n_layer)]         # [T, F] Σ_b A_t²
    channels = {}                                                            # norm -> [C]

    def observe(name, x):                                                    # x [B, T, C]
        what, i, lin = reads.get(name, (None, None, None))
        if what not in ("attn_norm", "mlp_norm", "final_norm"):
            return
        channels[name] = channels.get(name, 0.0) + _sq_bt(x)
        if what == "attn_norm":
            for sums, (W, b) in zip(qkv, _qkv(model, i)):
                A = linear(x, W, b)                                          # [B, T, n·D]
                sums[i] += _sq_bt(A).reshape(-1, cfg.head_dim).sum(1)       # [n] per head
        elif what == "mlp_norm":
            b = P[lin.bias] if lin.bias else None
            A = linear(x, P[name], b, lin.orientation).astype(np.float64)   # [B, T, F]
            T = A.shape[1]
            if len(gate[i]) < T:
                gate[i] = np.concatenate([gate[i], np.zeros((T - len(gate[i]), cfg.d_ff))])
            gate[i][:T] += (A * A).sum(0)                                    # Σ_b A_bt²

    def result():
        q, k, v = (np.sqrt(s) for s in qkv)                                  # [L, H], [L, K]
        heads = q + np.repeat(k + v, cfg.n_rep, axis=1)                      # [L, H]
        neurons = np.stack([np.sqrt(g).mean(0) for g in gate])               # (1/T) Σ_t ‖·‖₂,b
        return WidthImportance(heads, neurons, sum(np.sqrt(c) for c in channels.values()),
                               "voice-thesis")
    return observe, result


def width_importance(model, token_batches, importance: str = "minitron", batch_size: int = 8,
                     progress: bool = False) -> WidthImportance:
    """Head, neuron and channel importance (`importance`: "minitron" or "voice-thesis";
    the formulas are in the module docstring) from one pass over calibration ids [N, T]."""
    if importance not in IMPORTANCE:
        raise ConfigError(f"width importance must be one of {IMPORTANCE}, found {importance!r}")
    observe, result = (_minitron if importance == "minitron" else _voice_thesis)(model)
    for ids in tqdm(calibration._as_batches(token_batches, batch_size), desc="importance",
                    disable=not progress):
        forward(model, ids, observer=observe)
    return result()


def _top(scores, k) -> np.ndarray:
    """Indices of the k largest scores, in ascending index order."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:k])


def target_sizes(config, heads=None, kv_heads=None, ffn=None, hidden=None):
    """(H', K', F', C') with defaults and the families' constraints checked."""
    H, K, D, G = config.n_head, config.n_kv_head, config.head_dim, config.n_rep
    if families.family(config).heads_span_width:   # n_embd = n_head · head_dim (GPT-2)
        if heads is None and hidden is not None:
            if hidden % D:
                raise ConfigError(f"GPT-2 needs hidden = heads × head_dim ({D}); {hidden} is "
                                  f"not a multiple of {D}")
            heads = hidden // D
        hidden = heads * D if hidden is None and heads is not None else hidden
        if heads is not None and heads * D != hidden:
            raise ConfigError(f"GPT-2 ties n_embd to n_head × head_dim: --heads {heads} with "
                              f"head_dim {D} needs --hidden {heads * D}, found {hidden}")
        kv_heads = heads
    H2 = H if heads is None else int(heads)
    C2 = config.d_model if hidden is None else int(hidden)
    F2 = config.d_ff if ffn is None else int(ffn)
    if kv_heads is None:
        kv_heads = K if H2 % K == 0 else H2 // G
    K2 = int(kv_heads)
    for name, new, old in (("heads", H2, H), ("kv heads", K2, K), ("ffn", F2, config.d_ff),
                           ("hidden", C2, config.d_model)):
        if not 0 < new <= old:
            raise ConfigError(f"width trimming: {name} must be in [1, {old}], found {new}")
    if H2 % K2 or H2 // K2 > G:
        raise ConfigError(f"width trimming: {H2} query heads cannot share {K2} KV heads "
                          f"(need a multiple of {K2} with at most {G} per group)")
    return H2, K2, F2, C2


def _block_plan(cfg, prefix, i, q_rows, kv_rows, neurons, channels) -> dict:
    """{tensor name of block i: kept indices per axis}, from the family table: each
    linear keeps its (out, in) rows and columns (swapped for a Conv1D (in, out) weight);
    every norm but QK-norm (over D, unchanged) keeps the channels."""
    fam = families.family(cfg)
    p = families.block_prefix(cfg, prefix, i)
    HD, KD = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    out_rows = {"q": q_rows, "k": kv_rows, "v": kv_rows,
                "qkv": np.concatenate([q_rows, HD + kv_rows, HD + KD + kv_rows]),
                "o": channels, "fc": neurons, "gate": neurons, "up": neurons,
                "proj": channels, "down": channels}
    in_cols = {"o": q_rows, "proj": neurons, "down": neurons}             # else the channels
    plan = {}
    for module, role, _ in families.block_linears(cfg):
        rows_, cols = out_rows[role], in_cols.get(role, channels)
        plan[f"{p}{module}.weight"] = (rows_, cols) if fam.orientation == "out_in" else (cols, rows_)
        plan[f"{p}{module}.bias"] = (rows_,)
    for role, module in fam.norms.items():
        if role not in ("q", "k"):
            plan[f"{p}{module}.weight"] = plan[f"{p}{module}.bias"] = (channels,)
    return plan


def width_trim(model, token_batches=None, heads=None, kv_heads=None, ffn=None, hidden=None,
               scores: WidthImportance | None = None, importance: str = "minitron",
               batch_size: int = 8, progress: bool = False):
    """A new, physically smaller model keeping the most important heads, neurons, channels.

    heads/kv_heads/ffn/hidden: the new n_head, n_kv_head, d_ff, d_model (None = keep).
    scores: precomputed `width_importance` (else computed from token_batches with the
    `importance` formula, "minitron" or "voice-thesis").
    """
    cfg, P, prefix = model.config, model.params, model.prefix
    D, G = cfg.head_dim, cfg.n_rep
    H2, K2, F2, C2 = target_sizes(cfg, heads, kv_heads, ffn, hidden)
    if scores is None:
        scores = width_importance(model, token_batches, importance, batch_size, progress)
    channels = _top(scores.channels, C2)                                    # [C']
    plan = {}                                  # tensor name -> index array per axis (None = all)

    def rows(idx):
        return np.concatenate([np.arange(h * D, (h + 1) * D) for h in idx])

    for i in range(cfg.n_layer):
        groups = _top(scores.groups(G)[i], K2)                              # [K'] kept KV heads
        q_heads = np.concatenate([g * G + _top(scores.heads[i, g * G:(g + 1) * G], H2 // K2)
                                  for g in groups])                         # [H'] grouped order
        neurons = _top(scores.neurons[i], F2)                               # [F']
        plan.update(_block_plan(cfg, prefix, i, rows(q_heads), rows(groups), neurons, channels))
    fam = families.family(cfg)
    plan[prefix + fam.embedding] = (None, channels)
    if fam.positions:
        plan[prefix + fam.positions] = (None, channels)
    final = families.final_norm_name(cfg, prefix)
    plan.update({final + ".weight": (channels,), final + ".bias": (channels,)})
    if not cfg.tied:
        plan["lm_head.weight"] = (None, channels)

    def sliced(tensors):
        out = {}
        for name, value in tensors.items():
            for axis, idx in enumerate(plan.get(name, ())):
                if idx is not None:
                    value = np.take(value, idx, axis=axis)
            out[name] = value
        return out

    new_cfg = cfg.replace(n_head=H2, n_kv_head=K2, d_ff=F2, d_model=C2)
    extra = dict(model.extra_tensors)
    if "masks" in extra:
        extra["masks"] = sliced(extra["masks"])
    return model.replace(config=new_cfg, params=sliced(P), extra_tensors=extra)
