"""The staged compression pipeline behind `minislm compress` (grids: `minislm.sweep`).

The LLaMA thesis compresses in the order depth → width → LoRA → GPTQ → EoRA;
the GPT-2 slides fine-tune → trim → prune → quantize. Here every step is a
*stage*: a small adapter `run(model, options, ctx) -> model` around one
technique module, listed in `STAGES` with its default options and a `check`
that predicts the model's shape after the stage. A pipeline is any sequence
of stages (each optional, repeats allowed), written in TOML:

    model = "weights/tiny-gpt2"
    [[stage]]
    name = "depth_prune"      # finetune depth_prune width_prune lora quantize eora export
    layers = 2
    [[stage]]
    name = "quantize"
    method = "gptq"
    bits = 4
    group_size = 32

What happens, in order:
  1. `plan` validates the whole config against the model's config.json before
     any work: unknown stage or option, impossible ratio, N ≥ M, a group size
     or M that does not divide a layer's width, EoRA without a quantize stage
     before it, … all raise ConfigError naming the stage and the field.
  2. The input model is evaluated (row "baseline"), then each stage runs, its
     output is saved under DIR/stages/NN_name/model/ (written to a temporary
     folder and renamed, so a folder that exists is complete), evaluated, and a
     done-marker DIR/stages/NN_name/done.json records the options, a key of
     everything that produced the stage's input, the metrics and the time.
  3. With `resume`, a stage whose marker carries the same key is not redone:
     its saved model is loaded and its metrics reused.
  4. After every stage the report (DIR/report.md, DIR/report.json, optional
     PNG plots) is rewritten, so an interrupted run still leaves a report.

A stage whose technique module has not been written raises an error that
says which module is missing; no stage ever reports numbers it did not measure.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_text
from .config import Config
from .errors import ConfigError, InputError
from .evaluate.facts import auto_threads, blas_threads
from .evaluate.report import options_text, write_report
from .evaluate.summary import summarize
from .adapt.lora import target_linears
from .model import Model, families
from .outputs import check_output, mark_output, output_lock

DEFAULT_MODEL = "weights/tiny-gpt2"
DEFAULT_EVAL = {
    "ppl_tokens": 4096,        # tokens of the corpus test split scored per stage
    "seqlen": 128,             # perplexity window T (stride = T)
    "ppl_data": None,          # a text file instead of the corpus test split
    "toolcall": 24,            # held-out tool-call examples per stage (0: skip)
    "qa": 0,                   # questions of the project QA set per stage (0: skip)
    "choice": 0,               # corpus sentence-completion items per stage (0: skip)
    "speed": True,             # prefill/decode tokens/s and peak memory
    "device": "siracusa",      # cost-model device for the verdict column (None: skip)
}
DEFAULT_CALIBRATION = {"samples": 32, "seqlen": 128, "data": None, "seed": 0}
# `minislm compress` without --config (configs/default.toml holds the same, to copy and edit)
DEFAULT_PIPELINE = {
    # the shipped models learned the corpus only: sentence completion on held-out
    # docstrings is the task they can be scored on (tool calls need a fine-tune first)
    "eval": {"toolcall": 0, "choice": 100},
    "stage": [
        {"name": "depth_prune", "layers": 1, "method": "block"},
        {"name": "width_prune", "method": "wanda", "nm": "2:4"},
        {"name": "lora", "rank": 8, "steps": 20},
        {"name": "quantize", "method": "gptq", "bits": 4, "group_size": 32},
        {"name": "eora", "rank": 8},
        {"name": "export", "formats": ["hf", "gguf"], "gguf_type": "q8_0"},
    ],
}


def resolve_model(path: str) -> str:
    """A relative model path from the working directory, else from the minislm checkout
    (so `weights/tiny-gpt2` and the configs/ files work from any directory)."""
    if Path(path).exists() or Path(path).is_absolute():
        return str(path)
    beside_package = Path(__file__).resolve().parents[1] / path
    return str(beside_package) if beside_package.exists() else str(path)


class StageUnavailable(ConfigError):
    """A stage's technique module is not part of this minislm checkout."""


def _technique(module: str, stage: str):
    """Import a technique module, or say clearly which stage needs it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise StageUnavailable(f"stage '{stage}' needs {module}, which is not available in "
                               f"this minislm ({e}); remove the stage from the config") from None


# ============================================================================ checks
def require(cond, where, message):
    if not cond:
        raise ConfigError(f"{where}: {message}")


def _linear_widths(config: Config) -> set[int]:
    """The input widths d_in of every block linear (what N:M groups and quant groups cut)."""
    return {lin.d_in for lin in families.linear_layers(config)}


def check_finetune(o, cfg, where):
    for key in ("steps", "batch_size"):
        require(isinstance(o[key], int) and o[key] > 0, where, f"{key} must be a positive "
                f"integer, found {o[key]!r}")
    require(isinstance(o["warmup"], int) and o["warmup"] >= 0, where, f"warmup must be a "
            f"non-negative integer, found {o['warmup']!r}")
    require(math.isfinite(o["lr"]) and o["lr"] > 0, where, f"lr must be a positive finite "
            f"number, found {o['lr']!r}")
    require(o["data"] in ("corpus", "toolcall", "requirements") or Path(o["data"]).exists(), where,
          f"data must be 'corpus', 'toolcall', 'requirements' or an existing file, "
          f"found {o['data']!r}")
    require(2 <= o["seq_len"] <= cfg.max_position, where, f"seq_len must lie in [2, "
          f"{cfg.max_position}], found {o['seq_len']}")
    return cfg


DEPTH_METHODS = ("ppl", "block", "magnitude", "taylor", "middle")


def check_depth_prune(o, cfg, where):
    k = o["layers"]
    require(isinstance(k, int) and 0 < k < cfg.n_layer, where, f"layers (blocks to remove) must "
          f"be an integer in [1, {cfg.n_layer - 1}] for a {cfg.n_layer}-layer model, found {k!r}")
    require(o["method"] in DEPTH_METHODS, where, f"method must be one of {DEPTH_METHODS}, "
          f"found {o['method']!r}")
    try:
        from .prune.depth import protection
    except ImportError:
        protection = None                # run_depth_prune says the module is missing
    if protection is not None and o["method"] != "middle":
        try:
            protection(cfg.n_layer, k, o["protect_first"], o["protect_last"])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return cfg.replace(n_layer=cfg.n_layer - k)


def _trim_sizes(o, cfg) -> dict:
    """Fractions removed (mlp, heads, embedding) -> the new widths width_trim takes."""
    sizes = {}
    if o["mlp"]:
        sizes["ffn"] = cfg.d_ff - int(round(o["mlp"] * cfg.d_ff))
    if o["heads"]:
        sizes["heads"] = cfg.n_head - int(round(o["heads"] * cfg.n_head))
    if o["embedding"]:
        sizes["hidden"] = cfg.d_model - int(round(o["embedding"] * cfg.d_model))
    return sizes


def check_width_prune(o, cfg, where):
    method = o["method"]
    require(method in ("wanda", "magnitude", "sparsegpt", "minitron"), where,
          f"method must be wanda, magnitude, sparsegpt or minitron, found {method!r}")
    if method == "minitron":
        for key in ("mlp", "heads", "embedding"):
            r = o[key]
            require(isinstance(r, (int, float)) and 0 <= r < 1, where,
                  f"{key} (fraction removed) must lie in [0, 1), found {r!r}")
        sizes = _trim_sizes(o, cfg)
        require(sizes, where, "minitron trimming needs a fraction to remove: mlp, heads or "
              "embedding")
        require(o["nm"] is None and o["sparsity"] is None, where, "nm/sparsity belong to wanda, "
              "magnitude or sparsegpt, not minitron")
        try:
            from .prune.width import target_sizes
        except ImportError:
            return cfg
        try:
            H2, K2, F2, C2 = target_sizes(cfg, **sizes)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return cfg.replace(n_head=H2, n_kv_head=K2, d_ff=F2, d_model=C2)
    nm, sparsity = o.get("nm"), o.get("sparsity")
    require((nm is None) != (sparsity is None), where, "give exactly one of nm ('2:4') or "
          "sparsity (0-1)")
    if sparsity is not None:
        require(isinstance(sparsity, (int, float)) and 0 <= sparsity < 1, where,
              f"sparsity must lie in [0, 1), found {sparsity!r}")
        return cfg
    try:
        n, m = (int(v) for v in str(nm).split(":"))
    except ValueError:
        raise ConfigError(f"{where}: nm must look like '2:4', found {nm!r}") from None
    require(0 < n < m, where, f"N:M = {n}:{m} needs 0 < N < M (N pruned of every M)")
    bad = sorted(w for w in _linear_widths(cfg) if w % m)
    require(not bad, where, f"M = {m} does not divide the input width {bad} of some linear "
          "layers (N:M groups need whole groups of M)")
    return cfg


def check_lora(o, cfg, where):
    require(isinstance(o["rank"], int) and o["rank"] > 0, where,
          f"rank must be a positive integer, found {o['rank']!r}")
    require(math.isfinite(o["alpha"]) and o["alpha"] > 0, where, f"alpha must be a positive "
            f"finite number, found {o['alpha']!r}")
    require(0 <= o["dropout"] < 1, where, f"dropout must lie in [0, 1), found {o['dropout']!r}")
    shapes_only = Model(config=cfg, params={}, prefix=families.default_prefix(cfg))
    try:
        chosen = target_linears(shapes_only, o["targets"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    smallest = min(min(lin.d_in, lin.d_out) for lin in chosen)
    require(o["rank"] <= smallest, where, f"rank {o['rank']} exceeds min(d_in, d_out) = "
            f"{smallest} of the adapted layers")
    return check_finetune(o, cfg, where)


QUANT_SCHEMES = {"int8": (8, -1), "int4": (4, -1)}


def parse_scheme(scheme: str) -> tuple[int, int]:
    """'int8' -> (8, per channel); 'int4-g128' -> (4, 128)."""
    name, _, group = str(scheme).partition("-g")
    if name not in QUANT_SCHEMES or (group and not group.isdigit()):
        raise ConfigError(f"quantization scheme must look like 'int8', 'int4' or 'int4-g128', "
                          f"found {scheme!r}")
    bits, g = QUANT_SCHEMES[name]
    return bits, int(group) if group else g


def check_quantize(o, cfg, where):
    if o.get("scheme"):
        o["bits"], o["group_size"] = parse_scheme(o["scheme"])
    require(o["method"] in ("rtn", "gptq", "awq"), where,
          f"method must be rtn, gptq or awq, found {o['method']!r}")
    require(o["bits"] in (2, 3, 4, 5, 6, 7, 8), where, f"bits must be 2-8, found {o['bits']!r}")
    require(isinstance(o["eora_rank"], int) and o["eora_rank"] >= 0, where,
          f"eora_rank must be a non-negative integer, found {o['eora_rank']!r}")
    require(math.isfinite(o["damp"]) and o["damp"] >= 0, where, f"damp must be a "
            f"non-negative finite number, found {o['damp']!r}")
    g = o["group_size"]
    require(isinstance(g, int) and g >= -1, where, f"group_size must be a positive integer or "
          f"-1 (per output channel), found {g!r}")
    if g > 0:
        bad = sorted(w for w in _linear_widths(cfg) if w % g)
        require(not bad, where, f"group_size {g} does not divide the input width {bad} of "
              "some linear layers")
    return cfg


def check_eora(o, cfg, where):
    require(isinstance(o["rank"], int) and o["rank"] > 0, where,
          f"rank must be a positive integer, found {o['rank']!r}")
    return cfg


GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")


def check_export(o, cfg, where):
    formats = o["formats"]
    require(isinstance(formats, list) and formats and set(formats) <= {"hf", "gguf"}, where,
          f"formats must be a non-empty list of 'hf' and 'gguf', found {formats!r}")
    require(o["gguf_type"] in GGUF_TYPES, where, f"gguf_type must be one of {GGUF_TYPES}, "
          f"found {o['gguf_type']!r}")
    return cfg


# ============================================================================ stages
@dataclass
class Context:
    """What stages share: the output folder, calibration windows, the float model for EoRA."""
    out: Path
    calibration: dict
    progress: bool = True
    seed: int = 0
    overwrite: bool = False              # replace stage folders minislm did not write
    before_quantize: object = None       # the float model the last quantize stage started from
    _calib_ids: object = None

    def calib_ids(self, model):
        """Calibration windows [n, T] from the corpus train split (or the configured file)."""
        if self._calib_ids is None:
            from .calibration import calibration_batches
            c = self.calibration
            self._calib_ids = calibration_batches(
                model, c["data"], n_samples=c["samples"],
                seqlen=min(c["seqlen"], model.config.max_position), seed=c["seed"])
        return self._calib_ids


def _training_examples(model, o):
    """(ids, labels) examples: the corpus train split in windows, a task, or a file."""
    ft = _technique("minislm.adapt.finetune", "finetune/lora")
    if o["data"] == "corpus":
        from .data.corpus import corpus_text
        return ft.text_windows(model.tokenizer, corpus_text("train"), o["seq_len"])
    return ft.load_examples(model.tokenizer, o["data"], o["seq_len"], seed=0)


def _keep_masks(model):
    """Re-apply the pruning masks: training moves pruned weights away from 0, and a
    merged LoRA update B·A is dense, so the sparsity of the earlier stages is restored."""
    masks = model.extra_tensors.get("masks")
    if not masks:
        return model
    from .prune.masks import apply_masks
    return apply_masks(model, masks)


def run_finetune(model, o, ctx):
    ft = _technique("minislm.adapt.finetune", "finetune")
    tuned, _ = ft.finetune(model, _training_examples(model, o), o["steps"], lr=o["lr"],
                           batch_size=o["batch_size"], seed=ctx.seed, progress=ctx.progress,
                           warmup=min(o["warmup"], o["steps"]))
    return _keep_masks(tuned) if o["keep_masks"] else tuned


def run_depth_prune(model, o, ctx):
    depth = _technique("minislm.prune.depth", "depth_prune")
    batches = None if o["method"] in ("magnitude", "middle") else ctx.calib_ids(model)
    return depth.depth_prune(model, o["layers"], method=o["method"], token_batches=batches,
                             protect_first=o["protect_first"], protect_last=o["protect_last"],
                             progress=ctx.progress)


def run_width_prune(model, o, ctx):
    if o["method"] == "minitron":
        width = _technique("minislm.prune.width", "width_prune")
        return width.width_trim(model, ctx.calib_ids(model), progress=ctx.progress,
                                **_trim_sizes(o, model.config))
    module = _technique(f"minislm.prune.{o['method']}", "width_prune")
    if o["method"] == "magnitude":
        return module.magnitude_prune(model, sparsity=o["sparsity"], nm=o["nm"])
    prune = getattr(module, o["method"])
    return prune(model, ctx.calib_ids(model), sparsity=o["sparsity"], nm=o["nm"],
                 progress=ctx.progress)


def run_lora(model, o, ctx):
    lora = _technique("minislm.adapt.lora", "lora")
    ft = _technique("minislm.adapt.finetune", "lora")
    adapted = lora.add_lora(model, o["rank"], o["alpha"], o["dropout"], o["targets"],
                            seed=ctx.seed)
    tuned, _ = ft.finetune(adapted, _training_examples(model, o), o["steps"], lr=o["lr"],
                           batch_size=o["batch_size"], seed=ctx.seed, progress=ctx.progress,
                           warmup=min(o["warmup"], o["steps"]))
    merged = lora.merge(tuned)
    return _keep_masks(merged) if o["keep_masks"] else merged


def run_quantize(model, o, ctx):
    mq = _technique("minislm.quant.model_quant", "quantize")
    calib = None if o["method"] == "rtn" else ctx.calib_ids(model)
    options = dict(method=o["method"], bits=o["bits"], group_size=o["group_size"],
                   sym=o["sym"], act_order=o["act_order"], damp=o["damp"])
    if o["eora_rank"]:
        calib = ctx.calib_ids(model)
    quantized, _ = mq.quantize_model(model, calib_ids=calib, progress=ctx.progress,
                                     eora_rank=o["eora_rank"], **options)
    ctx.before_quantize = model
    return quantized


def run_eora(model, o, ctx):
    """Add EoRA's rank-r term to every quantized linear of `model` (quant/eora.py).

    ΔW = W − Ŵ uses the float weights the quantize stage started from, and
    H = 2 XᵀX/n the inputs each linear sees in the *quantized* model (one
    calibration pass; no re-quantization, the codes stay as they are).
    """
    eora = _technique("minislm.quant.eora", "eora")
    from .calibration import collect
    if ctx.before_quantize is None:
        raise ConfigError("stage 'eora' needs a quantize stage before it")
    quantized = {name: w for name, w in model.params.items() if hasattr(w, "eora_A")}
    stats = collect(model, ctx.calib_ids(model), stats=("xtx",), names=list(quantized),
                    progress=ctx.progress)
    params = dict(model.params)
    for lin in families.linear_layers(model.config, model.prefix):
        qt = quantized.get(lin.name)
        if qt is None:
            continue
        if qt.eora_A is not None:
            raise ConfigError(f"stage 'eora': {lin.name} already carries an EoRA term "
                              "(quantize eora_rank > 0); use one or the other")
        W = np.asarray(ctx.before_quantize.params[lin.name], dtype=np.float32)
        W = W.T if lin.orientation == "in_out" else W                       # [out, in]
        comp = eora.eora(W, qt.effective_out_in(), stats[lin.name].hessian(),
                         min(o["rank"], *W.shape))
        params[lin.name] = dataclasses.replace(qt, eora_A=comp.A, eora_B=comp.B)
    extra = dict(model.extra_config)
    extra["quantization_config"] = {**extra.get("quantization_config", {}),
                                    "eora_rank": o["rank"]}
    return model.replace(params=params, extra_config=extra)


def run_export(model, o, ctx):
    from . import save
    export = ctx.out / "export"
    if "hf" in o["formats"]:
        check_output(export / "hf", overwrite=ctx.overwrite, what="export folder")
        save(model, mark_output(export / "hf", "compress"))
    if "gguf" in o["formats"]:
        gguf = _technique("minislm.quant.gguf_export", "export")
        gguf.export_gguf(model, export / f"model-{o['gguf_type']}.gguf", qtype=o["gguf_type"])
    return model


# name -> (default options, check(options, config, where) -> config, run(model, options, ctx))
STAGES = {
    "finetune": ({"steps": 100, "lr": 3e-4, "batch_size": 8, "seq_len": 128, "warmup": 10,
                  "data": "corpus", "keep_masks": True}, check_finetune, run_finetune),
    "depth_prune": ({"layers": 1, "method": "ppl", "protect_first": None,
                     "protect_last": None}, check_depth_prune, run_depth_prune),
    "width_prune": ({"method": "wanda", "nm": None, "sparsity": None, "mlp": 0.0, "heads": 0.0,
                     "embedding": 0.0}, check_width_prune, run_width_prune),
    "lora": ({"rank": 8, "alpha": 8.0, "dropout": 0.0, "targets": None, "steps": 20,
              "lr": 1e-3, "batch_size": 4, "seq_len": 128, "warmup": 5, "data": "corpus",
              "keep_masks": True}, check_lora, run_lora),
    "quantize": ({"method": "gptq", "scheme": None, "bits": 4, "group_size": 128, "sym": False,
                  "act_order": False, "damp": 0.01, "eora_rank": 0}, check_quantize,
                 run_quantize),
    "eora": ({"rank": 8}, check_eora, run_eora),
    "export": ({"formats": ["hf", "gguf"], "gguf_type": "q8_0"}, check_export, run_export),
}


# ============================================================================ planning
@dataclass
class PlannedStage:
    index: int                 # 1-based position in the pipeline
    name: str
    options: dict              # defaults merged with the config's, validated
    config: Config             # predicted model config after the stage
    key: str = ""              # hash of the input model and every stage up to this one
    given: dict = field(default_factory=dict)   # the options the config spelled out

    @property
    def label(self) -> str:
        return f"{self.index:02d}_{self.name}"


def load_config(path) -> dict:
    """A pipeline/sweep TOML file as a dict (ConfigError naming the file when it does not parse)."""
    path = Path(path)
    if path.exists() and not path.is_file():      # a folder or a FIFO would fail or block
        raise ConfigError(f"{path}: is not a regular file (expected a TOML config)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: cannot be read as a TOML config "
                          f"({type(e).__name__})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _type_ok(value, default) -> bool:
    """Does a config value have the type of its default (None defaults: checked by the stage)?"""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


OPTIONAL_TYPES = {     # options whose default is None: the types they may take
    "nm": (str,), "sparsity": (int, float), "targets": (list,), "protect_first": (int,),
    "protect_last": (int,), "scheme": (str,), "ppl_data": (str,), "device": (str,),
    "data": (str,), "model": (str,),
}


def _merged(defaults: dict, given: dict, where: str) -> dict:
    """Defaults overridden by `given`, every name and type checked."""
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: expected a table of options, found "
                          f"{type(given).__name__}")
    unknown = sorted(set(given) - set(defaults) - {"name"})
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; expected some of "
                          f"{sorted(defaults)}")
    for key, value in given.items():
        if key == "name":
            continue
        default = defaults[key]
        allowed = OPTIONAL_TYPES.get(key, ()) if default is None else ()
        bad = not _type_ok(value, default) or (
            allowed and value is not None and (isinstance(value, bool)
                                               or not isinstance(value, allowed)))
        if key == "targets" and isinstance(value, list):
            bad = bad or not all(isinstance(v, str) for v in value)
        if bad:
            expected = type(default).__name__ if default is not None else \
                " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"{where}: option '{key}' must be {expected}, found {value!r}")
    options = {k: given.get(k, v) for k, v in defaults.items()}
    return json.loads(json.dumps(options))                    # a deep copy


NAMED_DATA = ("corpus", "toolcall", "requirements")


def data_fingerprint(source) -> str | None:
    """sha256 of what a data path holds: a file's bytes, or the names and bytes of every
    *.txt below a folder (what `load_text_corpus` reads). None for the built-in data
    (None, 'corpus', 'toolcall', 'requirements'). Keys hold this, not the path, so an
    edited calibration or perplexity file is never mistaken for the old one."""
    if source is None or source in NAMED_DATA:
        return None
    path = Path(source)
    files = [path] if path.is_file() else sorted(path.rglob("*.txt")) if path.is_dir() else []
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else "").encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_identity(model_dir: Path, calibration: dict, seed: int) -> str:
    """What every stage's output depends on besides its options: the checkpoint files
    (name, size, modification time), the calibration settings, the contents of the
    calibration data and the seed."""
    files = sorted(p for p in Path(model_dir).iterdir()
                   if p.suffix in (".json", ".safetensors") and p.is_file())
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps([str(Path(model_dir).resolve()), stamp, calibration,
                       data_fingerprint(calibration["data"]), seed],
                      sort_keys=True, default=str)


def measurement_key(eval_options: dict) -> dict:
    """The evaluation options plus the contents of the perplexity file: a stage whose
    marker was measured with other options or another text is measured again."""
    return {**eval_options, "ppl_data_sha256": data_fingerprint(eval_options["ppl_data"])}


def plan(stage_list: list, model_config: Config, model_id: str) -> list[PlannedStage]:
    """Validate every stage against the (predicted) model shape before any work."""
    if not isinstance(stage_list, list):
        raise ConfigError("'stage' must be a list of tables ([[stage]] in TOML)")
    planned, cfg, quantized, compensated = [], model_config, False, False
    key = hashlib.sha256(model_id.encode()).hexdigest()
    for i, given in enumerate(stage_list, 1):
        if not isinstance(given, dict) or "name" not in given:
            raise ConfigError(f"stage {i}: expected a table with a 'name' (one of "
                              f"{', '.join(STAGES)})")
        name = given["name"]
        where = f"stage {i} ({name})"
        if not isinstance(name, str) or name not in STAGES:
            raise ConfigError(f"stage {i}: unknown stage {name!r}; expected one of "
                              f"{', '.join(STAGES)}")
        defaults, check, _ = STAGES[name]
        options = _merged(defaults, given, where)
        if quantized and name in ("finetune", "depth_prune", "width_prune", "lora", "quantize"):
            raise ConfigError(f"{where}: comes after a quantize stage; quantized weights cannot "
                              "be pruned, trained or re-quantized — move it before 'quantize'")
        if name == "eora" and not quantized:
            raise ConfigError(f"{where}: EoRA compensates a quantization error; put a "
                              "'quantize' stage before it")
        if name == "eora" and compensated:
            raise ConfigError(f"{where}: the quantized weights already carry an EoRA term (an "
                              "earlier 'eora' stage or the quantize stage's eora_rank); use one")
        cfg = check(options, cfg, where)
        quantized = quantized or name == "quantize"
        compensated = compensated or name == "eora" or (name == "quantize" and
                                                         options["eora_rank"] > 0)
        produced_by = [name, options]
        if data_fingerprint(options.get("data")) is not None:   # a training file: its contents
            produced_by.append(data_fingerprint(options["data"]))
        key = hashlib.sha256((key + json.dumps(produced_by, sort_keys=True)).encode()
                             ).hexdigest()
        planned.append(PlannedStage(i, name, options, cfg, key,
                                    {k: v for k, v in given.items() if k != "name"}))
    return planned


# ============================================================================ evaluation
def evaluate_stage(model, folder: Path, eval_options: dict, progress: bool = False) -> dict:
    """The report's columns for one saved model, plus the cost model's verdict."""
    metrics = summarize(model, folder, eval_options, progress)
    if eval_options["device"]:
        metrics.update(cost_verdict(folder, eval_options["device"]))
    return metrics


def cost_verdict(folder: Path, device: str) -> dict:
    """The hardware cost model's fit and tokens/s for the saved model on `device`."""
    try:
        from .hardware.cost import estimate
        from .hardware.folder import read_model_folder
    except ImportError:
        return {"verdict": "cost model unavailable"}
    info = read_model_folder(folder)
    cfg = info["config"]
    r = estimate(cfg, device, context=min(256, cfg.max_position - 1),
                 weight_bits=info["weight_bits"], sparsity=info["sparsity"],
                 group_size=info["group_size"] if info["group_size"] > 0 else 128,
                 sym=info["sym"], embedding_bits=info["embedding_bits"],
                 eora_rank=info["eora_rank"])
    return {"fits": r["fits"], "device_tok_s": r["tokens_per_s"],
            "verdict": f"{'fits' if r['fits'] else 'does not fit'} {r['device']}, "
                       f"{r['tokens_per_s']:.0f} tok/s ({r['bottleneck']})"}


# ============================================================================ running
def _save_model_dir(model, folder: Path, overwrite: bool = False) -> None:
    """Save to folder/model via a temporary sibling renamed into place (never half written).

    Only folders minislm wrote (they carry its marker) are replaced, unless `overwrite`.
    """
    from . import save
    final, partial = folder / "model", folder / "model.partial"
    for path in (final, partial):
        check_output(path, overwrite=overwrite, what="stage folder")
    if partial.exists():
        shutil.rmtree(partial)
    save(model, mark_output(partial, "compress"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def _marker(folder: Path) -> dict | None:
    path = folder / "done.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None                       # a damaged marker: the stage is redone


@dataclass
class Row:
    label: str                 # "baseline" or "NN_name"
    stage: str
    options: dict
    metrics: dict
    seconds: float             # time of the stage itself (0 for the baseline)
    resumed: bool = False
    folder: str = ""
    given: dict = field(default_factory=dict)


def _write_marker(folder: Path, st: PlannedStage, metrics: dict, seconds: float,
                  eval_options: dict) -> None:
    atomic_write_text(folder / "done.json", json.dumps(
        {"stage": st.name, "options": st.options, "key": st.key, "eval": eval_options,
         "metrics": metrics, "seconds": seconds}, indent=1, default=str) + "\n")


def run_stages(model, planned: list[PlannedStage], folder_of, ctx: Context, eval_options: dict,
               resume: bool, on_row=None, baseline_folder=None,
               baseline_key: str = "", finished: set | None = None) -> tuple[object, list[Row]]:
    """Run (or resume) each planned stage; folder_of(stage) is where its output lives.

    With `resume`, a finished stage (marker with the same key) is loaded instead
    of run; if the evaluation options changed since, it is only re-evaluated.
    `finished`: folders written earlier in this same run (a sweep's shared
    prefixes), reused even without resume; the folders this call writes are added.
    Returns the final model and one Row per stage (the baseline first when
    baseline_folder is given, reused when its marker has `baseline_key`).
    on_row(rows) is called after every row.
    """
    from . import load
    rows, measured = [], measurement_key(eval_options)
    if baseline_folder is not None:
        marker = _marker(baseline_folder) if resume else None
        reused = marker is not None and marker.get("key") == baseline_key and \
            marker.get("eval") == measured
        if reused:
            metrics = marker["metrics"]
        else:
            metrics = evaluate_stage(model, Path(model.path), eval_options, ctx.progress)
            baseline_folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(baseline_folder / "done.json", json.dumps(
                {"key": baseline_key, "eval": measured, "metrics": metrics}, indent=1,
                default=str) + "\n")
        rows.append(Row("baseline", "baseline", {}, metrics, 0.0, reused, str(model.path)))
        if on_row:
            on_row(rows)
    for st in planned:
        folder = folder_of(st)
        marker = _marker(folder) if resume or folder in (finished or ()) else None
        _, _, run = STAGES[st.name]
        if marker is not None and marker.get("key") == st.key and (folder / "model").exists():
            if st.name == "quantize":          # EoRA after a resumed quantize needs it
                ctx.before_quantize = model
            model = load(folder / "model")
            seconds, metrics = marker["seconds"], marker["metrics"]
            if marker.get("eval") != measured:              # same model, new measurements
                metrics = evaluate_stage(model, folder / "model", eval_options, ctx.progress)
                _write_marker(folder, st, metrics, seconds, measured)
            rows.append(Row(st.label, st.name, st.options, metrics, seconds, True,
                            str(folder / "model"), st.given))
        else:
            start = time.perf_counter()
            produced = run(model, st.options, ctx)
            seconds = time.perf_counter() - start
            folder.mkdir(parents=True, exist_ok=True)
            _save_model_dir(produced, folder, ctx.overwrite)
            # go on with what a user gets from the folder, as a resumed run does
            model = load(folder / "model")
            metrics = evaluate_stage(model, folder / "model", eval_options, ctx.progress)
            _write_marker(folder, st, metrics, seconds, measured)
            rows.append(Row(st.label, st.name, st.options, metrics, seconds, False,
                            str(folder / "model"), st.given))
            if finished is not None:
                finished.add(folder)
        if on_row:
            on_row(rows)
    return model, rows


@dataclass
class PipelineConfig:
    model: str
    stages: list
    eval: dict = field(default_factory=lambda: dict(DEFAULT_EVAL))
    calibration: dict = field(default_factory=lambda: dict(DEFAULT_CALIBRATION))
    seed: int = 0


def pipeline_config(raw: dict, model: str | None = None, where: str = "config") -> PipelineConfig:
    """Validate the top level of a pipeline config (stages are checked by `plan`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, found {type(raw).__name__}")
    allowed = {"model", "stage", "eval", "calibration", "seed", "sweep", "description"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; expected some of "
                          f"{sorted(allowed)}")
    ev = _merged(DEFAULT_EVAL, raw.get("eval", {}), f"{where} [eval]")
    cal = _merged(DEFAULT_CALIBRATION, raw.get("calibration", {}), f"{where} [calibration]")
    for table, key, low in (("eval", "ppl_tokens", 0), ("eval", "seqlen", 2),
                            ("eval", "toolcall", 0), ("eval", "qa", 0),
                            ("calibration", "samples", 1), ("calibration", "seqlen", 2),
                            ("calibration", "seed", 0)):
        value = (ev if table == "eval" else cal)[key]
        require(value >= low, f"{where} [{table}]", f"{key} must be at least {low}, "
                f"found {value}")
    for table, options in (("eval", ev), ("calibration", cal)):
        data = options["ppl_data" if table == "eval" else "data"]
        require(data is None or Path(data).exists(), f"{where} [{table}]",
                f"{'ppl_data' if table == 'eval' else 'data'} {data!r}: no such file or folder")
    seed = raw.get("seed", 0)
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, where,
            f"seed must be a non-negative integer, found {seed!r}")
    model_name = model or raw.get("model") or DEFAULT_MODEL
    require(isinstance(model_name, (str, Path)), where, f"model must be a path, found "
            f"{model_name!r}")
    model_name = resolve_model(str(model_name))
    stages = raw.get("stage", [])
    require(isinstance(stages, list), where, "'stage' must be a list of tables ([[stage]])")
    return PipelineConfig(model=str(model_name), stages=list(stages), eval=ev, calibration=cal,
                          seed=seed)


def report_rows(rows: list[Row]) -> list[dict]:
    return [{"label": r.label, "stage": r.stage, "options": r.options,
             "options_text": options_text(r.given), "metrics": r.metrics,
             "seconds": round(r.seconds, 2), "resumed": r.resumed, "folder": r.folder}
            for r in rows]


def input_paths(pc: PipelineConfig) -> list:
    """Everything a pipeline reads: the model folder and the data files (an output
    folder must neither be nor hold any of them)."""
    stage_data = [st.get("data") for st in pc.stages if isinstance(st, dict)]
    return [pc.model, pc.eval["ppl_data"], pc.calibration["data"],
            *(d for d in stage_data if isinstance(d, str))]


def compress(raw_config: dict, out, model_path: str | None = None, resume: bool = False,
             progress: bool = True, threads: int | None = None,
             overwrite: bool = False) -> tuple[list[Row], str]:
    """Run a pipeline config into folder `out`; returns (rows, report Markdown).

    threads: BLAS threads for the whole run (None: 1 for a small model, see
    `evaluate.facts.auto_threads`; the BLAS default otherwise).
    overwrite: write into a non-empty `out` (or stage folder) minislm did not write.
    Two runs cannot write one `out` at once (`outputs.output_lock`).
    """
    pc = pipeline_config(raw_config, model_path)
    model_dir = Path(pc.model)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"model {model_dir}: no such checkpoint folder (config.json missing)")
    identity = run_identity(model_dir, pc.calibration, pc.seed)
    planned = plan(pc.stages, Config.from_file(model_dir / "config.json"), identity)
    out = check_output(out, input_paths(pc), overwrite)
    for st in planned:                   # a stage folder holding a user's files: refused now
        check_output(out / "stages" / st.label / "model", overwrite=overwrite,
                     what="stage folder")
    with output_lock(out, "compress"):
        mark_output(out, "compress")
        return _compress_into(out, pc, planned, identity, resume, progress, threads, overwrite)


def _compress_into(out: Path, pc: PipelineConfig, planned: list, identity: str, resume: bool,
                   progress: bool, threads: int | None, overwrite: bool):
    from . import load
    atomic_write_text(out / "pipeline.json", json.dumps(
        {"model": pc.model, "stage": pc.stages, "eval": pc.eval, "calibration": pc.calibration,
         "seed": pc.seed}, indent=1) + "\n")
    ctx = Context(out=out, calibration=pc.calibration, progress=progress, seed=pc.seed,
                  overwrite=overwrite)
    model = load(pc.model)
    stages_dir = out / "stages"
    preamble = (f"Model `{pc.model}`; stages: {' → '.join(st.name for st in planned) or 'none'}."
                f" Perplexity: first {pc.eval['ppl_tokens']} tokens of "
                f"{pc.eval['ppl_data'] or 'the corpus test split'}, windows of "
                f"{pc.eval['seqlen']}; tool-call accuracy on {pc.eval['toolcall']} held-out "
                f"examples; cost model: {pc.eval['device']}. Each stage's model is in "
                "`stages/NN_name/model/`.")
    columns = [("label", "Stage"), ("options_text", "Options"), ("seconds", "Stage s")]

    def on_row(rows, plots=False):       # the table after every stage, the plots at the end
        return write_report(out, "Compression report", preamble, report_rows(rows), columns,
                            plots=plots)

    with blas_threads(threads or auto_threads(model)):
        _, rows = run_stages(model, planned, lambda st: stages_dir / st.label, ctx, pc.eval,
                             resume, on_row, baseline_folder=stages_dir / "00_baseline",
                             baseline_key=identity)
    return rows, on_row(rows, plots=True)

