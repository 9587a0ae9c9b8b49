"""The families as tables: every checkpoint tensor name, its shape, and its role.

This is the one abstraction every technique needs (see ARCHITECTURE.md):
`model.params` keeps the checkpoint's own names and layouts, and a `Family`
record says where each piece of the decoder lives in them. The forward
(`minislm.model.forward`) reads the table, never the family's name, and
`linear_layers(config)` names every linear weight with its role and
orientation, so GPTQ, WANDA, LoRA, RTN and the cost model have one code path
for every family.

Adding a family. Gemma 3 and Gemma 2 were added this way, with no branch on the
family's name anywhere else: (1) `config.py` gets a reader and a writer for the
model_type's config.json (`READERS`, `WRITERS`) and any new hyperparameter as a
Config field with a neutral default (query_pre_attn_scalar, sliding_window,
layer_types, soft-caps); (2) this file gets a `Family` row naming the checkpoint's
tensors relative to its prefix — embedding, positions, final norm, the block's
norms by role (attn_in, mlp_in, optionally attn_out, mlp_out, q, k), the q/k/v
projections (one fused or three), the MLP inputs (fc, or gate and up for a gated
MLP), the activation, the layout, and flags for what the block does differently
(layer_norm, rope, norm_offset, scaled_embedding, heads_span_width); (3) only a
piece no family has yet is written as a new small function beside its backward in
`layers.py` (Gemma needed none: soft-capping and sliding windows became arguments of
the attention). The forward, the backward, calibration, pruning, quantization, LoRA
and the cost model then read the new table; tests compare it with transformers on
random tiny configs (tests/test_gemma.py is the template).

Layout traps, stated once:
  * GPT-2 stores linear weights as Conv1D, shape (in, out): y = x W + b.
    Its `c_attn` fuses q, k, v along the output axis: W[:, 0:C] is q, W[:, C:2C]
    is k, W[:, 2C:3C] is v.
  * LLaMA stores nn.Linear, shape (out, in): y = x Wᵀ. HF's q/k rows are ordered
    for the split-halves RoPE (pair i with i + D/2), which `layers.rotate_half` uses.
  * Tied heads: the LM head is the token embedding; there is no `lm_head.weight`.
  * Gemma's RMSNorm multiplies by (1 + w): the checkpoint stores w, the tables say
    `norm_offset = 1` (GGUF files store 1 + w; the GGUF reader undoes it).
  * GPT-2 checkpoints from the Hub name tensors `h.0.attn...`; ones written by
    transformers' `save_pretrained` prefix them with `transformer.`. Both are kept
    as found: `prefix` is "" or "transformer." (LLaMA always "model.").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config


@dataclass(frozen=True)
class Family:
    """Where a family keeps each piece of the decoder, and which small pieces it uses.

    Names are relative to the checkpoint prefix (`prefixes[0]` by default); a
    block's tensors are relative to `block.format(i=i)`.
    """
    name: str
    prefixes: tuple[str, ...]          # accepted checkpoint prefixes, the default first
    block: str                         # "h.{i}." / "layers.{i}."
    embedding: str                     # token embedding [V, C]
    positions: str | None              # learned position embedding [max_position, C], or None
    final_norm: str                    # the norm before the head (module name)
    norms: dict                        # block norms: role -> module; roles attn_in, mlp_in
                                       # (and attn_out, mlp_out, q, k where the family has them)
    attention: tuple                   # (module, role) of the q/k/v projections: one fused or three
    attention_out: str                 # module of the output projection (role "o")
    mlp: tuple                         # (module, role) of the MLP inputs: fc, or gate and up (GLU)
    mlp_out: tuple                     # (module, role) of the MLP output projection
    activation: str                    # key of `layers.ACTIVATIONS`
    orientation: str                   # "in_out" (Conv1D) or "out_in" (nn.Linear)
    layer_norm: bool                   # LayerNorm with bias, or RMSNorm
    rope: bool                         # rotary positions on q and k
    biased: bool = False               # every linear has a bias (else config.attention_bias/mlp_bias)
    heads_span_width: bool = False     # C = H·D and K = H: heads and width change together
    norm_offset: float = 0.0           # norm gain is (offset + w): 1 for Gemma's RMSNorm
    scaled_embedding: bool = False     # x₀ = E[ids] · √C (Gemma)
    buffers: tuple = field(default=())  # tensor-name suffixes that are buffers, not parameters

    @property
    def prefix(self) -> str:
        """The default checkpoint prefix (`prefixes[0]`)."""
        return self.prefixes[0]


GPT2 = Family(
    name="gpt2", prefixes=("transformer.", ""), block="h.{i}.", embedding="wte.weight",
    positions="wpe.weight", final_norm="ln_f", norms={"attn_in": "ln_1", "mlp_in": "ln_2"},
    attention=(("attn.c_attn", "qkv"),), attention_out="attn.c_proj",
    mlp=(("mlp.c_fc", "fc"),), mlp_out=("mlp.c_proj", "proj"), activation="gelu_tanh",
    orientation="in_out", layer_norm=True, rope=False, biased=True, heads_span_width=True,
    buffers=(".attn.bias", ".attn.masked_bias"))

LLAMA = Family(
    name="llama", prefixes=("model.",), block="layers.{i}.", embedding="embed_tokens.weight",
    positions=None, final_norm="norm",
    norms={"attn_in": "input_layernorm", "mlp_in": "post_attention_layernorm"},
    attention=(("self_attn.q_proj", "q"), ("self_attn.k_proj", "k"), ("self_attn.v_proj", "v")),
    attention_out="self_attn.o_proj",
    mlp=(("mlp.gate_proj", "gate"), ("mlp.up_proj", "up")), mlp_out=("mlp.down_proj", "down"),
    activation="silu", orientation="out_in", layer_norm=False, rope=True,
    buffers=("rotary_emb.inv_freq",))

GEMMA2 = Family(
    name="gemma2", prefixes=("model.",), block="layers.{i}.", embedding="embed_tokens.weight",
    positions=None, final_norm="norm",
    norms={"attn_in": "input_layernorm", "attn_out": "post_attention_layernorm",
           "mlp_in": "pre_feedforward_layernorm", "mlp_out": "post_feedforward_layernorm"},
    attention=LLAMA.attention, attention_out=LLAMA.attention_out, mlp=LLAMA.mlp,
    mlp_out=LLAMA.mlp_out, activation="gelu_tanh", orientation="out_in", layer_norm=False,
    rope=True, norm_offset=1.0, scaled_embedding=True, buffers=("inv_freq", "embed_scale"))

GEMMA3 = Family(**{**GEMMA2.__dict__, "name": "gemma3", "norms": {
    **GEMMA2.norms, "q": "self_attn.q_norm", "k": "self_attn.k_norm"}})   # + QK-norm

FAMILIES = {f.name: f for f in (GPT2, LLAMA, GEMMA3, GEMMA2)}
GPT2_PREFIXES = GPT2.prefixes


def family(config: Config) -> Family:
    """The table of `config.family`."""
    return FAMILIES[config.family]


@dataclass(frozen=True)
class Linear:
    """One linear weight of the model."""
    name: str          # checkpoint tensor name of the weight
    bias: str | None   # checkpoint tensor name of the bias, if the family has one
    role: str          # qkv (fused), q, k, v, o, fc, proj, gate, up, down, lm_head
    layer: int | None  # block index, None for the LM head
    orientation: str   # "in_out" (GPT-2 Conv1D) or "out_in" (nn.Linear)
    d_in: int
    d_out: int


def block_prefix(config: Config, prefix: str, i: int) -> str:
    """The name prefix of block i's tensors, e.g. "transformer.h.3." or "model.layers.3."."""
    return prefix + family(config).block.format(i=i)


def default_prefix(config: Config) -> str:
    """The default checkpoint prefix of the config's family."""
    return family(config).prefix


def embedding_name(config: Config, prefix: str) -> str:
    """The token embedding's tensor name under `prefix`."""
    return prefix + family(config).embedding


def final_norm_name(config: Config, prefix: str) -> str:
    """The final norm's module name (its tensors are `<name>.weight` [and `.bias`])."""
    return prefix + family(config).final_norm


def lm_head_name(config: Config, prefix: str) -> str:
    """The tensor the logits are computed from: the embedding when tied."""
    return embedding_name(config, prefix) if config.tied else "lm_head.weight"


def role_shape(config: Config, role: str) -> tuple[int, int]:
    """(d_in, d_out) of a linear with this role."""
    C, F, H, K, D = config.d_model, config.d_ff, config.n_head, config.n_kv_head, config.head_dim
    return {"qkv": (C, (H + 2 * K) * D), "q": (C, H * D), "k": (C, K * D), "v": (C, K * D),
            "o": (H * D, C), "fc": (C, F), "gate": (C, F), "up": (C, F),
            "proj": (F, C), "down": (F, C), "lm_head": (C, config.vocab_size)}[role]


def block_linears(config: Config) -> list[tuple[str, str, bool]]:
    """(module, role, has bias) of a block's linears, in forward order."""
    fam = family(config)
    attn_bias = fam.biased or config.attention_bias
    mlp_bias = fam.biased or config.mlp_bias
    return ([(m, role, attn_bias) for m, role in fam.attention]
            + [(fam.attention_out, "o", attn_bias)]
            + [(m, role, mlp_bias) for m, role in fam.mlp]
            + [(fam.mlp_out[0], fam.mlp_out[1], mlp_bias)])


def linear_layers(config: Config, prefix: str | None = None, include_lm_head: bool = False):
    """Every linear weight as a `Linear` record, in forward order."""
    fam = family(config)
    prefix = fam.prefix if prefix is None else prefix
    rows = block_linears(config)
    out = []
    for i in range(config.n_layer):
        p = block_prefix(config, prefix, i)
        for module, role, bias in rows:
            d_in, d_out = role_shape(config, role)
            out.append(Linear(f"{p}{module}.weight", f"{p}{module}.bias" if bias else None,
                              role, i, fam.orientation, d_in, d_out))
    if include_lm_head:
        out.append(Linear(lm_head_name(config, prefix), None, "lm_head", None, "out_in",
                          config.d_model, config.vocab_size))
    return out


def norm_shapes(config: Config) -> dict[str, tuple]:
    """{module: gain shape} of one block's norms (relative to the block prefix)."""
    return {module: ((config.head_dim,) if role in ("q", "k") else (config.d_model,))
            for role, module in family(config).norms.items()}


def expected_shapes(config: Config, prefix: str | None = None) -> dict[str, tuple]:
    """Every tensor a checkpoint of this config must contain, with its shape."""
    fam = family(config)
    prefix = fam.prefix if prefix is None else prefix
    C, V = config.d_model, config.vocab_size
    shapes = {}
    for lin in linear_layers(config, prefix):
        shapes[lin.name] = (lin.d_in, lin.d_out) if lin.orientation == "in_out" \
            else (lin.d_out, lin.d_in)
        if lin.bias:
            shapes[lin.bias] = (lin.d_out,)
    shapes[prefix + fam.embedding] = (V, C)
    if fam.positions:
        shapes[prefix + fam.positions] = (config.max_position, C)
    norms = [(block_prefix(config, prefix, i) + m, shape) for i in range(config.n_layer)
             for m, shape in norm_shapes(config).items()]
    for module, shape in norms + [(final_norm_name(config, prefix), (C,))]:
        shapes[module + ".weight"] = shape
        if fam.layer_norm:
            shapes[module + ".bias"] = shape
    if not config.tied:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def ignorable(config: Config, name: str) -> bool:
    """Tensors found in real checkpoints that are buffers, not parameters."""
    return name.endswith(family(config).buffers) or (config.tied and name == "lm_head.weight")


def detect_prefix(config: Config, names) -> str:
    """The prefix under which `names` hold the token embedding (the default if none does)."""
    fam = family(config)
    for prefix in fam.prefixes:
        if f"{prefix}{fam.embedding}" in names:
            return prefix
    return fam.prefix
