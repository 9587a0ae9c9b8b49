"""LoRA: a frozen weight plus a trainable low-rank update (Hu et al. 2021, eq. 3).

    y = x W₀ᵀ + (α/r) · drop(x) Aᵀ Bᵀ,   i.e.  W = W₀ + (α/r) · B A

per token, with the shapes:

    h = drop(x) Aᵀ                  [.., r]        A [r, d_in]   (Kaiming-uniform, a = √5)
    y = base(x) + s · h Bᵀ          [.., d_out]    B [d_out, r]  (zeros: ΔW = 0 at init)
    s = α / r                       the "scaling" of HF PEFT
    drop(x) = x ⊙ m / (1 − p)       inverted dropout on the adapter input only, m ~ Bernoulli(1 − p)

Backward (dy = ∂L/∂y), recomputing the cheap h instead of storing it:

    ∂L/∂B = s · dyᵀ h               summed over every token
    dh    = s · dy B
    ∂L/∂A = dhᵀ drop(x)
    ∂L/∂x = dy W₀ + (dh A) ⊙ m / (1 − p)   (W₀ frozen: no gradient)

Merging folds the update into the weight, ΔW = s · B A of shape (out, in),
transposed for GPT-2's Conv1D (in, out) layout — PEFT's `fan_in_fan_out`.

`LoraLinear` is a weight object: `model.params[name]` holds it instead of an
array, and both the inference forward (`layers.linear` calls `W.linear(x)`)
and the training backward (`W.linear_backward(x, dy) -> (dx, {"lora_A": dA,
"lora_B": dB})`) dispatch to it. The base may be an array in the checkpoint's
layout or a frozen quantized tensor with `.linear(x)` and `.dequantize()`
(QLoRA: the adapter trains on top of dequantized-on-the-fly weights).

Adapters are saved in HF PEFT's format (`adapter_config.json` +
`adapter_model.safetensors` with PEFT's tensor names), so
`peft.PeftModel.from_pretrained(transformers_model, folder)` loads them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_text, read_safetensors, write_safetensors
from ..errors import CheckpointError, ConfigError
from ..model import families

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT's own defaults per architecture (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
TIED_HEAD_KEY = "base_model.model.lm_head.weight"
DEFAULT_TARGETS = {"gpt2": ("c_attn",), "llama": ("q_proj", "v_proj"),
                   "gemma3": ("q_proj", "v_proj"), "gemma2": ("q_proj", "v_proj")}


@dataclasses.dataclass(frozen=True)
class LoraLinear:
    """W₀ (frozen) + (α/r)·B·A, as a drop-in weight for `model.params`."""
    base: object                 # W₀: array in checkpoint layout, or a quantized tensor
    A: np.ndarray                # [r, d_in]
    B: np.ndarray                # [d_out, r]
    alpha: float
    dropout: float = 0.0
    fan_in_fan_out: bool = False  # True when W₀ is stored (in, out) (GPT-2 Conv1D)
    dropout_seed: tuple | None = None  # set per training step; None = inference (no dropout)

    @property
    def rank(self) -> int:
        """r, the inner dimension of B·A (rows of A [r, d_in])."""
        return self.A.shape[0]

    @property
    def scaling(self) -> float:
        """α/r, the factor on B·A in W = W₀ + (α/r)·B·A."""
        return float(self.alpha) / self.rank

    @property
    def shape(self) -> tuple:
        """The shape of W₀ as stored in the checkpoint (so the wrapper stands in for it)."""
        return tuple(self.base.shape)

    @property
    def dtype(self):
        """The dtype of the adapters A and B (float32), which the layer computes in."""
        return self.A.dtype

    def _keep(self, x):
        """The dropout multiplier m / (1 − p) for input x, or None when not dropping.

        Drawn from `dropout_seed` and x's shape, so the forward and the backward
        of one training step see the same mask without storing it.
        """
        if self.dropout_seed is None or self.dropout <= 0.0:
            return None
        rng = np.random.default_rng(self.dropout_seed)
        m = rng.random(x.shape, dtype=np.float32) >= self.dropout
        return m.astype(x.dtype) * (1.0 / (1.0 - self.dropout))

    def _base_linear(self, x):
        if isinstance(self.base, np.ndarray):
            return x @ (self.base if self.fan_in_fan_out else self.base.T)
        return self.base.linear(x)

    def base_out_in(self) -> np.ndarray:
        """W₀ as a dense (out, in) array (dequantized if the base is quantized)."""
        W = self.base if isinstance(self.base, np.ndarray) else \
            np.asarray(self.base.dequantize(), dtype=self.A.dtype)  # checkpoint layout
        W = W.T if self.fan_in_fan_out else W
        if W.shape != (self.B.shape[0], self.A.shape[1]):
            raise CheckpointError(f"LoRA: the base weight is {W.shape} as (out, in), expected "
                                  f"{(self.B.shape[0], self.A.shape[1])}")
        return W

    def delta(self) -> np.ndarray:
        """ΔW = s · B A, shape (out, in)."""
        return (self.scaling * (self.B @ self.A)).astype(self.A.dtype)

    def linear(self, x):
        """y = base(x) + s · drop(x) Aᵀ Bᵀ, x [.., d_in] -> y [.., d_out]."""
        keep = self._keep(x)
        xd = x if keep is None else x * keep
        h = xd @ self.A.T                                                   # [.., r]
        return self._base_linear(x) + self.scaling * (h @ self.B.T)        # [.., d_out]

    def linear_backward(self, x, dy):
        """(∂L/∂x, {"lora_A": ∂L/∂A, "lora_B": ∂L/∂B}) from the input x and dy = ∂L/∂y."""
        keep = self._keep(x)
        xd = x if keep is None else x * keep
        s = self.scaling
        x2 = xd.reshape(-1, xd.shape[-1])                                  # [N, d_in]
        dy2 = dy.reshape(-1, dy.shape[-1])                                 # [N, d_out]
        h = x2 @ self.A.T                                                  # [N, r]
        dB = s * (dy2.T @ h)                                               # [d_out, r]
        dh = s * (dy2 @ self.B)                                            # [N, r]
        dA = dh.T @ x2                                                     # [r, d_in]
        dxd = (dh @ self.A).reshape(x.shape)                               # [.., d_in]
        dx = dy @ self.base_out_in() + (dxd if keep is None else dxd * keep)
        return dx, {"lora_A": dA, "lora_B": dB}

    def merged(self) -> np.ndarray:
        """W₀ + ΔW in the checkpoint's layout."""
        W = self.base_out_in() + self.delta()
        return np.ascontiguousarray(W.T if self.fan_in_fan_out else W)

    def dequantize(self) -> np.ndarray:
        """The float weight this adapter computes with (W₀ + ΔW, checkpoint layout):
        the `StoredWeight` protocol's name for `merged`."""
        return self.merged()

    def state_dict(self, name: str) -> dict:
        """What `minislm.save` writes for this weight: the merged dense matrix."""
        return {name: self.merged()}

    def replace(self, **changes) -> "LoraLinear":
        """A copy with the given fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------ naming and targets
def module_path(config, prefix: str, weight_name: str) -> str:
    """The transformers module path of a weight: checkpoints stored under another
    prefix (GPT-2 Hub files have none) still live under the family's default prefix
    (`transformer.` in GPT2LMHeadModel)."""
    path = weight_name[: -len(".weight")]
    default = families.default_prefix(config)
    if prefix != default and path.startswith(prefix):
        path = default + path[len(prefix):]
    return path


def matches(path: str, targets) -> bool:
    """PEFT's rule for a list of target names: equal, or a suffix after a dot."""
    return any(path == t or path.endswith("." + t) for t in targets)


def target_linears(model, targets=None):
    """The `Linear` records LoRA adapts: every block linear whose module path matches."""
    cfg = model.config
    targets = tuple(DEFAULT_TARGETS[cfg.family] if targets is None else targets)
    chosen = [lin for lin in families.linear_layers(cfg, model.prefix)
              if matches(module_path(cfg, model.prefix, lin.name), targets)]
    if not chosen:
        names = sorted({module_path(cfg, model.prefix, lin.name).split(".")[-1]
                        for lin in families.linear_layers(cfg, model.prefix)})
        raise ConfigError(f"LoRA targets {list(targets)} match no linear layer of this "
                          f"{cfg.family} model; its module names are {names}")
    return chosen


def kaiming_uniform_a(rng, r: int, d_in: int, dtype) -> np.ndarray:
    """PEFT's init of A: torch's kaiming_uniform_(a=√5) on a (r, d_in) weight.

    gain = √(2 / (1 + a²)) = √(1/3); bound = gain · √(3 / fan_in) = 1 / √d_in.
    """
    bound = 1.0 / math.sqrt(d_in)
    return rng.uniform(-bound, bound, size=(r, d_in)).astype(dtype)


# ------------------------------------------------------------------ model -> model
def check_options(rank, alpha, dropout) -> None:
    """Raise ConfigError unless rank r ≥ 1 is an integer, α is positive and finite (or None:
    α = r) and the dropout p lies in [0, 1). A NaN α would make every merged weight NaN."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ConfigError(f"LoRA rank must be a positive integer, found {rank!r}")
    if alpha is not None and not (isinstance(alpha, (int, float, np.number))
                                  and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"LoRA alpha must be a positive finite number, found {alpha!r}")
    if not (isinstance(dropout, (int, float, np.number)) and 0.0 <= dropout < 1.0):
        raise ConfigError(f"LoRA dropout must lie in [0, 1), found {dropout!r}")


def add_lora(model, rank: int = 8, alpha: float | None = None, dropout: float = 0.0,
             targets=None, seed: int = 0):
    """A new model whose target linears are `LoraLinear`s (A random, B = 0: same outputs).

    alpha defaults to the rank (scaling 1, PEFT's default lora_alpha=8 with r=8).
    targets: module names as PEFT takes them (default q_proj,v_proj for LLaMA,
    c_attn for GPT-2; "c_proj" matches both GPT-2 c_projs, "attn.c_proj" one).
    """
    check_options(rank, alpha, dropout)
    alpha = float(rank if alpha is None else alpha)
    rng = np.random.default_rng(seed)
    params = dict(model.params)
    for lin in target_linears(model, targets):
        W0 = params[lin.name]
        if isinstance(W0, LoraLinear):
            raise ConfigError(f"{lin.name} already carries a LoRA adapter; merge it first")
        dtype = W0.dtype if isinstance(W0, np.ndarray) else np.float32
        if rank > min(lin.d_in, lin.d_out):
            raise ConfigError(f"LoRA rank {rank} exceeds min(d_in, d_out) = "
                              f"{min(lin.d_in, lin.d_out)} of {lin.name}")
        A = kaiming_uniform_a(rng, rank, lin.d_in, dtype)                 # [r, d_in]
        B = np.zeros((lin.d_out, rank), dtype=dtype)                      # [d_out, r]
        params[lin.name] = LoraLinear(W0, A, B, alpha, dropout, lin.orientation == "in_out")
    return model.replace(params=params)


def lora_weights(model) -> dict:
    """name -> LoraLinear for every adapted weight of the model."""
    return {name: w for name, w in model.params.items() if isinstance(w, LoraLinear)}


def trainable(model) -> dict:
    """The adapter tensors as a flat dict: "<weight name>.lora_A" / ".lora_B" -> array."""
    out = {}
    for name, w in lora_weights(model).items():
        out[f"{name}.lora_A"], out[f"{name}.lora_B"] = w.A, w.B
    return out


def with_trainable(model, tensors: dict, dropout_seed=None):
    """A new model with the adapters' A, B taken from `tensors` (keys as `trainable`).

    dropout_seed: an int (one training step) gives every adapter its own mask
    stream, (seed, layer position); None switches dropout off.
    """
    params = dict(model.params)
    for i, (name, w) in enumerate(lora_weights(model).items()):
        seed = None if dropout_seed is None else (int(dropout_seed), i)
        params[name] = w.replace(A=tensors[f"{name}.lora_A"], B=tensors[f"{name}.lora_B"],
                                 dropout_seed=seed)
    return model.replace(params=params)


def merge(model):
    """A new model with every adapter folded into its weight: W = W₀ + s·B·A (plain arrays)."""
    params = {name: (w.merged() if isinstance(w, LoraLinear) else w)
              for name, w in model.params.items()}
    return model.replace(params=params)


def unmerge(merged_model, lora_model):
    """Undo `merge`: W₀ = W − s·B·A with the adapters of `lora_model`, returned as LoRA weights."""
    params = dict(merged_model.params)
    for name, w in lora_weights(lora_model).items():
        W = params.get(name)
        if not isinstance(W, np.ndarray) or W.shape != w.shape:
            raise ConfigError(f"unmerge: '{name}' of the merged model is not a dense array of "
                              f"shape {w.shape}")
        d = w.delta()
        params[name] = w.replace(base=W - (d.T if w.fan_in_fan_out else d), dropout_seed=None)
    return merged_model.replace(params=params)


# ------------------------------------------------------------------ PEFT files
def peft_key(config, prefix: str, weight_name: str, part: str) -> str:
    """PEFT's saved name: base_model.model.<module path>.lora_A.weight (adapter name dropped)."""
    return f"base_model.model.{module_path(config, prefix, weight_name)}.{part}.weight"


def save_adapter(model, folder, base_model_name_or_path: str | None = None,
                 modules_to_save=()) -> Path:
    """Write adapter_config.json + adapter_model.safetensors in PEFT's format.

    modules_to_save: names of dense weights trained in full beside the adapters
    (the resized embedding and LM head after adding tool tokens); PEFT stores
    them whole as base_model.model.<module path>.weight. A base model loading
    such an adapter must have the same vocabulary (resize it first).
    """
    adapters = lora_weights(model)
    if not adapters:
        raise ConfigError("save_adapter: the model has no LoRA weights (use add_lora first)")
    first = next(iter(adapters.values()))
    for name, w in adapters.items():
        if (w.rank, w.alpha, w.dropout) != (first.rank, first.alpha, first.dropout):
            raise ConfigError(f"save_adapter: '{name}' has (r, α, p) = {(w.rank, w.alpha, w.dropout)}, "
                              f"others {(first.rank, first.alpha, first.dropout)}; PEFT's config "
                              "holds one value")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder")
    cfg, prefix = model.config, model.prefix
    tensors = {}
    for name, w in adapters.items():
        tensors[peft_key(cfg, prefix, name, "lora_A")] = w.A
        tensors[peft_key(cfg, prefix, name, "lora_B")] = w.B
    for name in modules_to_save:
        if not isinstance(model.params.get(name), np.ndarray):
            raise ConfigError(f"save_adapter: modules_to_save entry '{name}' is not a dense "
                              "weight of the model")
        tensors[f"base_model.model.{module_path(cfg, prefix, name)}.weight"] = model.params[name]
    embedding = families.embedding_name(cfg, prefix)
    if cfg.tied and embedding in modules_to_save:
        # PEFT wraps the embedding but leaves the tied LM head on the old tensor:
        # save the head too (the same array) so transformers computes the same logits
        tensors[TIED_HEAD_KEY] = model.params[embedding]
        modules_to_save = [*modules_to_save, "lm_head.weight"]
    paths = sorted(module_path(cfg, prefix, n) for n in adapters)
    short = sorted({p.split(".")[-1] for p in paths})
    every = [module_path(cfg, prefix, lin.name) for lin in families.linear_layers(cfg, prefix)]
    # short names when they select exactly the adapted modules, full paths otherwise
    targets = short if sorted(p for p in every if matches(p, short)) == paths else paths
    base = base_model_name_or_path or (str(model.path) if model.path is not None else None)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": first.rank,
        "lora_alpha": first.alpha, "lora_dropout": first.dropout,
        "target_modules": targets,
        "fan_in_fan_out": first.fan_in_fan_out, "bias": "none", "inference_mode": True,
        "init_lora_weights": True, "use_rslora": False, "use_dora": False,
        "modules_to_save": sorted(module_path(cfg, prefix, n).split(".")[-1]
                                  for n in modules_to_save) or None,
        "base_model_name_or_path": base,
    }

    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / ADAPTER_WEIGHTS, tensors, metadata={"format": "pt"})
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def load_adapter(model, folder):
    """`model` with the PEFT adapter in `folder` attached (dropout kept for further training)."""
    folder = Path(folder)
    cfg_path, w_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    for p in (cfg_path, w_path):
        if not p.exists():
            raise CheckpointError(f"{p}: missing; a PEFT adapter folder holds {ADAPTER_CONFIG} "
                                  f"and {ADAPTER_WEIGHTS}")
    try:
        acfg = json.loads(cfg_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid UTF-8 JSON ({e})") from None
    if not isinstance(acfg, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object, found {type(acfg).__name__}")
    if acfg.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{cfg_path}: peft_type {acfg.get('peft_type')!r}, expected 'LORA'")
    for field, default in (("r", None), ("lora_alpha", None), ("lora_dropout", 0.0)):
        value = acfg.get(field, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CheckpointError(f"{cfg_path}: field '{field}' must be a number, "
                                  f"found {value!r}")
    if acfg["r"] < 1 or not 0.0 <= acfg.get("lora_dropout", 0.0) < 1.0:
        raise CheckpointError(f"{cfg_path}: expected r ≥ 1 and 0 ≤ lora_dropout < 1, found "
                              f"r={acfg['r']!r}, lora_dropout={acfg.get('lora_dropout')!r}")
    if not math.isfinite(acfg["lora_alpha"]):          # JSON readers accept NaN/Infinity
        raise CheckpointError(f"{cfg_path}: lora_alpha must be a finite number, found "
                              f"{acfg['lora_alpha']!r}; it would make every adapted weight NaN")
    if acfg.get("use_rslora") or acfg.get("use_dora"):
        raise CheckpointError(f"{cfg_path}: rsLoRA/DoRA adapters are not supported")
    tensors = read_safetensors(w_path, dtype=model.dtype)
    r, alpha, dropout = int(acfg["r"]), float(acfg["lora_alpha"]), float(acfg.get("lora_dropout", 0.0))
    cfg, prefix = model.config, model.prefix
    params, used = dict(model.params), set()
    for lin in families.linear_layers(cfg, prefix):
        ka = peft_key(cfg, prefix, lin.name, "lora_A")
        kb = peft_key(cfg, prefix, lin.name, "lora_B")
        if ka not in tensors and kb not in tensors:
            continue
        for key, shape in ((ka, (r, lin.d_in)), (kb, (lin.d_out, r))):
            if key not in tensors:
                raise CheckpointError(f"{w_path}: tensor '{key}' is missing")
            if tuple(tensors[key].shape) != shape:
                raise CheckpointError(f"{w_path}: tensor '{key}' has shape "
                                      f"{tuple(tensors[key].shape)}, expected {shape}")
        params[lin.name] = LoraLinear(params[lin.name], tensors[ka], tensors[kb], alpha, dropout,
                                      lin.orientation == "in_out")
        used |= {ka, kb}
    for name, value in model.params.items():        # modules_to_save: whole dense weights
        key = f"base_model.model.{module_path(cfg, prefix, name)}.weight"
        if key in tensors and name.endswith(".weight") and isinstance(value, np.ndarray):
            if tensors[key].shape != value.shape:
                raise CheckpointError(
                    f"{w_path}: tensor '{key}' has shape {tuple(tensors[key].shape)}, the "
                    f"model's '{name}' {value.shape} (an adapter trained with added tokens "
                    "needs the same tokens added to the base model first)")
            params[name] = tensors[key]
            used.add(key)
    if cfg.tied and TIED_HEAD_KEY in tensors:       # our own copy of the tied embedding
        emb = params[families.embedding_name(cfg, prefix)]
        if tensors[TIED_HEAD_KEY].shape != emb.shape or not np.array_equal(tensors[TIED_HEAD_KEY], emb):
            raise CheckpointError(f"{w_path}: '{TIED_HEAD_KEY}' differs from the embedding of "
                                  "this tied model")
        used.add(TIED_HEAD_KEY)
    unknown = sorted(set(tensors) - used)
    if unknown:
        raise CheckpointError(f"{w_path}: tensors {unknown[:4]} do not belong to any linear "
                              f"layer of this {cfg.family} model")
    if not used:
        raise CheckpointError(f"{w_path}: no LoRA tensors found")
    return model.replace(params=params)
