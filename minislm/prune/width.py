"""Width trimming (Minitron-style): drop attention heads, MLP neurons and
embedding channels, and physically slice the weights so the model is smaller.

Importance from activations on calibration text (Muralidharan et al. 2024,
"Compact Language Models via Pruning and Knowledge Distillation" §2.2;
voice-assistant thesis §5.4.1). ‖A‖₂ is the L2 norm over all calibration
tokens (batch and sequence) of an activation:

    head h          F_h = ‖A_q,h‖₂ + ‖A_k,h‖₂ + ‖A_v,h‖₂         A_q,h = X W_q,hᵀ (+ b), [n, D]
    MLP neuron j    F_j = ‖A_j‖₂,   A_j = φ(x W_fc/gate)_j (⊙ up) the input of down/proj
    channel c       F_c = Σ_norms ‖LN(X)_c‖₂    over every norm output (attention, MLP, final)

The q/k/v norms come exactly from the calibration statistics of the attention
input (no activation stored): for an output row w_o and bias b_o,

    ‖A_o‖² = Σ_t (w_o·x_t + b_o)² = w_oᵀ (XᵀX) w_o + 2 b_o w_o·(Σ_t x_t) + n b_o²

GQA (LLaMA): H query heads share K KV heads in groups of G = H/K. A KV group is
kept or dropped whole, with its K/V rows; query heads are ranked inside their
group (Minitron). Keeping H' heads keeps all K groups with H'/K heads each when
K divides H', else drops whole groups (H' = K'·G). GPT-2 has one head per group.

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

from .. import calibration
from ..errors import ConfigError
from ..model import families


@dataclasses.dataclass
class WidthImportance:
    heads: np.ndarray      # [L, H]  ‖A_q,h‖₂ per query head
    kv_heads: np.ndarray   # [L, K]  ‖A_k,g‖₂ + ‖A_v,g‖₂ per KV head
    neurons: np.ndarray    # [L, F]  ‖A_j‖₂ per MLP neuron
    channels: np.ndarray   # [C]     Σ over norm outputs of ‖LN(X)_c‖₂

    def groups(self, G: int) -> np.ndarray:
        """[L, K] importance of whole KV groups: their query heads plus their k and v."""
        L, H = self.heads.shape
        return self.heads.reshape(L, H // G, G).sum(-1) + self.kv_heads


def output_norms(W_out_in: np.ndarray, bias, stats: calibration.Stats) -> np.ndarray:
    """‖A_o‖₂ [out] for A = X Wᵀ + b from the input statistics (n, Σx, XᵀX)."""
    W = W_out_in.astype(np.float64)                                     # [out, in]
    sq = ((W @ stats.xtx) * W).sum(1)                                   # w_oᵀ XᵀX w_o
    if bias is not None:
        b = bias.astype(np.float64)
        sq = sq + 2.0 * b * (W @ stats.sum) + stats.n * b * b
    return np.sqrt(np.maximum(sq, 0.0))


def _qkv(model, i):
    """W_q [H·D, C], W_k, W_v [K·D, C] and biases of block i, as [out, in] views."""
    cfg, P = model.config, model.params
    p = families.block_prefix(cfg, model.prefix, i)
    if cfg.family == "gpt2":
        W, b, C = P[p + "attn.c_attn.weight"].T, P[p + "attn.c_attn.bias"], cfg.d_model
        return [(W[j * C:(j + 1) * C], b[j * C:(j + 1) * C]) for j in range(3)]
    return [(P[f"{p}self_attn.{r}_proj.weight"], P.get(f"{p}self_attn.{r}_proj.bias"))
            for r in "qkv"]


def width_importance(model, token_batches, batch_size: int = 8,
                     progress: bool = False) -> WidthImportance:
    """Head, KV-head, neuron and channel importance from one calibration pass."""
    cfg = model.config
    L, H, K, D = cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    by_role = {(lin.layer, lin.role): lin.name for lin in
               families.linear_layers(cfg, model.prefix, include_lm_head=True)}
    attn_in = [by_role[(i, "qkv" if cfg.family == "gpt2" else "q")] for i in range(L)]
    mlp_in = [by_role[(i, "fc" if cfg.family == "gpt2" else "gate")] for i in range(L)]
    mlp_hidden = [by_role[(i, "proj" if cfg.family == "gpt2" else "down")] for i in range(L)]
    head = by_role[(None, "lm_head")]
    stats = calibration.collect(model, token_batches, ("sum", "sq_norm", "xtx"),
                                names=attn_in + mlp_in + mlp_hidden + [head],
                                batch_size=batch_size, progress=progress)
    heads, kv_heads = np.zeros((L, H)), np.zeros((L, K))
    for i in range(L):
        (Wq, bq), (Wk, bk), (Wv, bv) = _qkv(model, i)
        s = stats[attn_in[i]]
        per_head = [np.sqrt((output_norms(W, b, s) ** 2).reshape(-1, D).sum(1))
                    for W, b in ((Wq, bq), (Wk, bk), (Wv, bv))]                # [H], [K], [K]
        heads[i], kv_heads[i] = per_head[0], per_head[1] + per_head[2]
    neurons = np.stack([np.sqrt(stats[n].sq_norm) for n in mlp_hidden])        # [L, F]
    channels = sum(np.sqrt(stats[n].sq_norm) for n in attn_in + mlp_in + [head])   # [C]
    return WidthImportance(heads, kv_heads, neurons, channels)


def _top(scores, k) -> np.ndarray:
    """Indices of the k largest scores, in ascending index order."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:k])


def target_sizes(config, heads=None, kv_heads=None, ffn=None, hidden=None):
    """(H', K', F', C') with defaults and the families' constraints checked."""
    H, K, D, G = config.n_head, config.n_kv_head, config.head_dim, config.n_rep
    if config.family == "gpt2":   # n_embd = n_head · head_dim: heads and hidden move together
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


def width_trim(model, token_batches=None, heads=None, kv_heads=None, ffn=None, hidden=None,
               scores: WidthImportance | None = None, batch_size: int = 8,
               progress: bool = False):
    """A new, physically smaller model keeping the most important heads, neurons, channels.

    heads/kv_heads/ffn/hidden: the new n_head, n_kv_head, d_ff, d_model (None = keep).
    scores: precomputed `width_importance` (else computed from token_batches).
    """
    cfg, P, prefix = model.config, model.params, model.prefix
    H, K, D, G = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.n_rep
    H2, K2, F2, C2 = target_sizes(cfg, heads, kv_heads, ffn, hidden)
    if scores is None:
        scores = width_importance(model, token_batches, batch_size, progress)
    channels = _top(scores.channels, C2)                                    # [C']
    plan = {}                                  # tensor name -> index array per axis (None = all)

    def rows(idx):
        return np.concatenate([np.arange(h * D, (h + 1) * D) for h in idx])

    for i in range(cfg.n_layer):
        p = families.block_prefix(cfg, prefix, i)
        groups = _top(scores.groups(G)[i], K2)                              # [K'] kept KV heads
        q_heads = np.concatenate([g * G + _top(scores.heads[i, g * G:(g + 1) * G], H2 // K2)
                                  for g in groups])                         # [H'] grouped order
        neurons = _top(scores.neurons[i], F2)                               # [F']
        q_rows, kv_rows = rows(q_heads), rows(groups)
        if cfg.family == "gpt2":
            qkv_cols = np.concatenate([j * cfg.d_model + q_rows for j in range(3)])
            plan.update({
                p + "ln_1.weight": (channels,), p + "ln_1.bias": (channels,),
                p + "attn.c_attn.weight": (channels, qkv_cols), p + "attn.c_attn.bias": (qkv_cols,),
                p + "attn.c_proj.weight": (q_rows, channels), p + "attn.c_proj.bias": (channels,),
                p + "ln_2.weight": (channels,), p + "ln_2.bias": (channels,),
                p + "mlp.c_fc.weight": (channels, neurons), p + "mlp.c_fc.bias": (neurons,),
                p + "mlp.c_proj.weight": (neurons, channels), p + "mlp.c_proj.bias": (channels,)})
        else:
            a, m = p + "self_attn.", p + "mlp."
            plan.update({
                p + "input_layernorm.weight": (channels,),
                p + "post_attention_layernorm.weight": (channels,),
                a + "q_proj.weight": (q_rows, channels), a + "q_proj.bias": (q_rows,),
                a + "k_proj.weight": (kv_rows, channels), a + "k_proj.bias": (kv_rows,),
                a + "v_proj.weight": (kv_rows, channels), a + "v_proj.bias": (kv_rows,),
                a + "o_proj.weight": (channels, q_rows), a + "o_proj.bias": (channels,),
                m + "gate_proj.weight": (neurons, channels), m + "gate_proj.bias": (neurons,),
                m + "up_proj.weight": (neurons, channels), m + "up_proj.bias": (neurons,),
                m + "down_proj.weight": (channels, neurons), m + "down_proj.bias": (channels,)})
    emb = families.embedding_name(cfg, prefix)
    plan[emb] = (None, channels)
    if cfg.family == "gpt2":
        plan.update({prefix + "wpe.weight": (None, channels), prefix + "ln_f.weight": (channels,),
                     prefix + "ln_f.bias": (channels,)})
    else:
        plan["model.norm.weight"] = (channels,)
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
