"""The stages: for each, its default options, its check and its run, side by side.

A stage is a `Stage(defaults, check, run)`:

    check(options, config, where) -> config   refuses impossible options (ConfigError
                                              naming `where`) and predicts the model's
                                              config after the stage, with no work done
    run(model, options, ctx) -> model         calls the technique; a new model, the
                                              input is never modified

`Context` is what a stage may read besides its options. It is frozen: a stage
never passes anything to a later one except the model it returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..adapt import finetune as ft
from ..adapt import lora
from ..config import Config
from ..data.corpus import corpus_text
from ..errors import ConfigError
from ..loading import save
from ..model import Model, families
from ..outputs import check_output, mark_output
from ..prune import depth, magnitude, sparsegpt, wanda, width
from ..prune.masks import apply_masks
from ..quant import eora, gguf_export, gguf_grid, model_quant


def require(cond, where, message):
    """ConfigError '<where>: <message>' unless cond."""
    if not cond:
        raise ConfigError(f"{where}: {message}")


@dataclass(frozen=True)
class Context:
    """What every stage may read: where exports go, the calibration windows, the seed.

    calib_ids() gives the calibration windows [n, T] (cut once, on first use: every
    stage's model keeps the input's tokenizer and max_position). float_model is the
    model the last quantize stage started from (what EoRA compensates towards); the
    driver, `run.run_stages`, sets it for each stage.
    """
    out: Path                                   # the export stage writes out/export/
    calib_ids: Callable[[], np.ndarray]
    progress: bool = True
    seed: int = 0
    overwrite: bool = False                     # replace folders minislm did not write
    float_model: Model | None = None


class Stage(NamedTuple):
    """A stage: its default options, `check(options, config, where) -> config` and
    `run(model, options, ctx) -> model`."""
    defaults: dict
    check: Callable          # check(options, config, where) -> config after the stage
    run: Callable            # run(model, options, ctx) -> model


def _linear_widths(config: Config) -> set[int]:
    """The input widths d_in of every block linear (what N:M groups and quant groups cut)."""
    return {lin.d_in for lin in families.linear_layers(config)}


def _keep_masks(model):
    """Re-apply the pruning masks: training moves pruned weights away from 0, and a
    merged LoRA update B·A is dense, so the sparsity of the earlier stages is restored."""
    masks = model.extra_tensors.get("masks")
    return apply_masks(model, masks) if masks else model


# ============================================================================ finetune
FINETUNE = {"steps": 100, "lr": 3e-4, "batch_size": 8, "seq_len": 128, "warmup": 10,
            "data": "corpus", "keep_masks": True}


def check_finetune(o, cfg, where):
    """Refuse a finetune (or lora) stage the training loop could not run; the config is
    unchanged."""
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
    try:                                              # the loop's own limits (NaN/∞, …)
        ft.finetune_options(o["steps"], o["lr"], o["batch_size"], seq_len=o["seq_len"],
                            warmup=min(o["warmup"], o["steps"]))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return cfg


def _training_examples(model, o):
    """(ids, labels) examples: the corpus train split in windows, a task, or a file."""
    if o["data"] == "corpus":
        return ft.text_windows(model.tokenizer, corpus_text("train"), o["seq_len"])
    return ft.load_examples(model.tokenizer, o["data"], o["seq_len"], seed=0)


def _train(model, o, ctx):
    tuned, _ = ft.finetune(model, _training_examples(model, o), o["steps"], lr=o["lr"],
                           batch_size=o["batch_size"], seed=ctx.seed, progress=ctx.progress,
                           warmup=min(o["warmup"], o["steps"]))
    return tuned


def run_finetune(model, o, ctx):
    """Full fine-tuning on the stage's data (`adapt.finetune`); pruning masks re-applied if kept."""
    tuned = _train(model, o, ctx)
    return _keep_masks(tuned) if o["keep_masks"] else tuned


# ============================================================================ depth_prune
DEPTH_PRUNE = {"layers": 1, "method": "ppl", "protect_first": None, "protect_last": None}
DEPTH_METHODS = ("ppl", "block", "magnitude", "taylor", "middle")


def check_depth_prune(o, cfg, where):
    """Refuse a block count outside [1, L − 1], an unknown method or impossible protected blocks."""
    k = o["layers"]
    require(isinstance(k, int) and 0 < k < cfg.n_layer, where, f"layers (blocks to remove) must "
            f"be an integer in [1, {cfg.n_layer - 1}] for a {cfg.n_layer}-layer model, found {k!r}")
    require(o["method"] in DEPTH_METHODS, where, f"method must be one of {DEPTH_METHODS}, "
            f"found {o['method']!r}")
    if o["method"] != "middle":
        try:
            depth.protection(cfg.n_layer, k, o["protect_first"], o["protect_last"])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return cfg.select_layers(range(cfg.n_layer - k))      # the planned shape


def run_depth_prune(model, o, ctx):
    """Remove `layers` blocks ranked by `method` (`prune.depth.depth_prune`)."""
    batches = None if o["method"] in ("magnitude", "middle") else ctx.calib_ids()
    return depth.depth_prune(model, o["layers"], method=o["method"], token_batches=batches,
                             protect_first=o["protect_first"], protect_last=o["protect_last"],
                             progress=ctx.progress)


# ============================================================================ width_prune
WIDTH_PRUNE = {"method": "wanda", "nm": None, "sparsity": None, "mlp": 0.0, "heads": 0.0,
               "embedding": 0.0}


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
    """Refuse bad trimming fractions, or a sparsity / N:M the linears' widths cannot take;
    the config after Minitron trimming."""
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
        require(o["nm"] is None and o["sparsity"] is None, where, "nm/sparsity belong to "
                "wanda, magnitude or sparsegpt, not minitron")
        try:
            H2, K2, F2, C2 = width.target_sizes(cfg, **sizes)
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


def run_width_prune(model, o, ctx):
    """Minitron trimming, or magnitude / WANDA / SparseGPT pruning to a sparsity or N:M pattern."""
    method = o["method"]
    if method == "minitron":
        return width.width_trim(model, ctx.calib_ids(), progress=ctx.progress,
                                **_trim_sizes(o, model.config))
    if method == "magnitude":
        return magnitude.magnitude_prune(model, sparsity=o["sparsity"], nm=o["nm"])
    prune = {"wanda": wanda.wanda, "sparsegpt": sparsegpt.sparsegpt}[method]
    return prune(model, ctx.calib_ids(), sparsity=o["sparsity"], nm=o["nm"],
                 progress=ctx.progress)


# ============================================================================ lora
LORA = {"rank": 8, "alpha": 8.0, "dropout": 0.0, "targets": None, "steps": 20, "lr": 1e-3,
        "batch_size": 4, "seq_len": 128, "warmup": 5, "data": "corpus", "keep_masks": True}


def check_lora(o, cfg, where):
    """Refuse bad LoRA options (rank, a NaN/∞ α, dropout, targets) and bad training numbers."""
    require(isinstance(o["rank"], int) and o["rank"] > 0, where,
            f"rank must be a positive integer, found {o['rank']!r}")
    try:                                              # a NaN alpha would merge into NaN weights
        lora.check_options(o["rank"], o["alpha"], o["dropout"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    shapes_only = Model(config=cfg, params={}, prefix=families.default_prefix(cfg))
    try:
        chosen = lora.target_linears(shapes_only, o["targets"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    smallest = min(min(lin.d_in, lin.d_out) for lin in chosen)
    require(o["rank"] <= smallest, where, f"rank {o['rank']} exceeds min(d_in, d_out) = "
            f"{smallest} of the adapted layers")
    return check_finetune(o, cfg, where)


def run_lora(model, o, ctx):
    """Add LoRA adapters, train them on the stage's data, merge them: W = W₀ + (α/r)·B·A."""
    adapted = lora.add_lora(model, o["rank"], o["alpha"], o["dropout"], o["targets"],
                            seed=ctx.seed)
    merged = lora.merge(_train(adapted, o, ctx))
    return _keep_masks(merged) if o["keep_masks"] else merged


# ============================================================================ quantize
QUANTIZE = {"method": "gptq", "scheme": None, "bits": 4, "group_size": 128, "sym": False,
            "act_order": False, "damp": 0.01, "eora_rank": 0, "grid": None}
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
    """Also writes the bits and group size a `scheme` stands for into the options, and
    the bits, group size and symmetry of a GGUF `grid` (q4_0, q4_1, q8_0: gguf_grid.py)."""
    if o.get("scheme"):
        o["bits"], o["group_size"] = parse_scheme(o["scheme"])
    if o.get("grid") is not None:
        require(o["grid"] in gguf_grid.GRIDS and o["method"] in ("rtn", "gptq"), where,
                f"grid must be one of {tuple(gguf_grid.GRIDS)} with method rtn or gptq, found "
                f"grid {o['grid']!r} with method {o['method']!r}")
        o["bits"], o["sym"] = gguf_grid.GRIDS[o["grid"]]
        o["group_size"] = gguf_grid.BLOCK
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


def run_quantize(model, o, ctx):
    """Every block linear quantized by `method` (`quant.model_quant.quantize_model`)."""
    calibrated = o["method"] != "rtn" or o["eora_rank"] > 0
    quantized, _ = model_quant.quantize_model(
        model, o["method"], o["bits"], o["group_size"], o["sym"], o["act_order"], o["damp"],
        o["eora_rank"], ctx.calib_ids() if calibrated else None, progress=ctx.progress,
        grid=o["grid"])
    return quantized


# ============================================================================ eora
EORA = {"rank": 8}


def check_eora(o, cfg, where):
    """Refuse a rank that is not a positive integer."""
    require(isinstance(o["rank"], int) and o["rank"] > 0, where,
            f"rank must be a positive integer, found {o['rank']!r}")
    return cfg


def run_eora(model, o, ctx):
    """EoRA's rank-r term on every quantized linear, towards the float model the
    quantize stage started from (`quant.eora.compensate_model`)."""
    return eora.compensate_model(model, ctx.float_model, ctx.calib_ids(), o["rank"],
                                 progress=ctx.progress)


# ============================================================================ export
EXPORT = {"formats": ["hf", "gguf"], "gguf_type": "q8_0"}
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")


def check_export(o, cfg, where):
    """Refuse export formats other than "hf" and "gguf", or an unknown GGUF tensor type."""
    formats = o["formats"]
    require(isinstance(formats, list) and formats and set(formats) <= {"hf", "gguf"}, where,
            f"formats must be a non-empty list of 'hf' and 'gguf', found {formats!r}")
    require(o["gguf_type"] in GGUF_TYPES, where, f"gguf_type must be one of {GGUF_TYPES}, "
            f"found {o['gguf_type']!r}")
    return cfg


def run_export(model, o, ctx):
    """ctx.out/export/hf (an HF folder) and/or ctx.out/export/model-<type>.gguf."""
    export = ctx.out / "export"
    if "hf" in o["formats"]:
        check_output(export / "hf", overwrite=ctx.overwrite, what="export folder")
        save(model, mark_output(export / "hf", "compress"))
    if "gguf" in o["formats"]:
        gguf_export.export_gguf(model, export / f"model-{o['gguf_type']}.gguf",
                                qtype=o["gguf_type"])
    return model


STAGES = {
    "finetune": Stage(FINETUNE, check_finetune, run_finetune),
    "depth_prune": Stage(DEPTH_PRUNE, check_depth_prune, run_depth_prune),
    "width_prune": Stage(WIDTH_PRUNE, check_width_prune, run_width_prune),
    "lora": Stage(LORA, check_lora, run_lora),
    "quantize": Stage(QUANTIZE, check_quantize, run_quantize),
    "eora": Stage(EORA, check_eora, run_eora),
    "export": Stage(EXPORT, check_export, run_export),
}
