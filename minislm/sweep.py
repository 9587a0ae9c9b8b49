"""Sweeps: a grid of pipelines (e.g. depth × N:M × quantization) in one table.

The LLaMA thesis' Tables A.1/A.2 list every combination of depth pruning,
width (N:M) pruning, LoRA and quantization with the same columns. A sweep
config names the axes; each point of their product is a pipeline whose stages
come in axis order:

    [[sweep.axis]]
    name = "Depth"              # the column title
    stage = "depth_prune"       # the stage this axis sets ...
    key = "layers"              # ... through this option
    values = [0, 2, 4, 6]       # 0 / "none" / false: the stage is left out
    options = { method = "block" }

A value may also be a table of several options of the stage, with an optional
label: `{ label = "EoRA", scheme = "int4-g128", eora_rank = 8 }`.

Points share prefixes — "Depth 2 + N:M 2:4 + int8" and "Depth 2 + N:M 2:4"
start with the same two stages — so every stage is stored under
DIR/cache/<key>_<stage>/, keyed by a hash of its input and options, and run
once. Every point is planned (validated) before the first stage runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .threads import auto_threads, blas_threads
from .evaluate.report import write_report
from .outputs import check_output, mark_output, output_lock
from .loading import load
from .pipeline import (STAGES, Context, calibration_windows, input_paths, model_config,
                       pipeline_config, plan, require, run_identity, run_stages)


NONE_VALUES = (None, 0, "none", False, "")


@dataclass
class Axis:
    """One axis of a sweep: the stage and option it varies, its values,
    the stage's fixed options."""
    name: str          # column title ("Depth", "N:M", "Quant")
    stage: str         # the stage this axis sets
    key: str           # the option it varies
    values: list       # a value in NONE_VALUES leaves the stage out
    options: dict      # the stage's fixed options


def sweep_axes(raw: dict, where: str = "config") -> list[Axis]:
    """The [[sweep.axis]] tables of a sweep config, checked."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("axis"), list) or \
            not sweep["axis"]:
        raise ConfigError(f"{where}: a sweep needs [[sweep.axis]] tables (name, stage, key, "
                          "values, options)")
    axes = []
    for i, a in enumerate(sweep["axis"], 1):
        w = f"{where} sweep.axis {i}"
        require(isinstance(a, dict), w, f"expected a table, found {type(a).__name__}")
        unknown = sorted(set(a) - {"name", "stage", "key", "values", "options"})
        require(not unknown, w, f"unknown field(s) {unknown}")
        stage, key = a.get("stage"), a.get("key")
        require(isinstance(stage, str) and stage in STAGES, w,
                f"stage must be one of {', '.join(STAGES)}, found {stage!r}")
        require(isinstance(key, str) and key in STAGES[stage].defaults, w, f"key must be an option "
                f"of {stage} ({sorted(STAGES[stage].defaults)}), found {key!r}")
        require(isinstance(a.get("values"), list) and a["values"], w, "values must be a "
                "non-empty list")
        options = a.get("options", {})
        require(isinstance(options, dict), w, f"options must be a table, found {options!r}")
        axes.append(Axis(str(a.get("name", key)), stage, key, a["values"], dict(options)))
    return axes


def _axis_stage(axis: Axis, value) -> tuple[str, dict | None]:
    """(the value as shown in the table, the stage it adds or None)."""
    if isinstance(value, dict):          # several options at once, e.g. GPTQ + EoRA rank
        options = {k: v for k, v in value.items() if k != "label"}
        shown = value.get("label") or ", ".join(f"{k}={v}" for k, v in options.items())
        return str(shown), {"name": axis.stage, **axis.options, **options}
    if value in NONE_VALUES:
        return "–", None
    return str(value), {"name": axis.stage, **axis.options, axis.key: value}


def grid(axes: list[Axis]) -> list[tuple[dict, list]]:
    """Every point of the grid: ({axis name: shown value or '–'}, stage list), in axis order."""
    points = []
    for values in itertools.product(*(a.values for a in axes)):
        made = [_axis_stage(a, v) for a, v in zip(axes, values)]
        points.append(({a.name: shown for a, (shown, _) in zip(axes, made)},
                       [stage for _, stage in made if stage is not None]))
    return points


def sweep(raw_config: dict, out, model_path: str | None = None, progress: bool = True,
          threads: int | None = None, resume: bool = False, overwrite: bool = False):
    """Run every grid point into folder `out`; returns (rows, report Markdown).

    A stage shared by several points is computed once per run. With `resume`, a
    stage is also reused whenever a finished folder with the same key exists, so
    re-running a sweep (or extending its axes) only computes what is new.
    overwrite: write into a non-empty `out` minislm did not write.
    """
    pc = pipeline_config(raw_config, model_path)
    if pc.stages:
        raise ConfigError("a sweep config sets its stages through [[sweep.axis]]; remove the "
                          "[[stage]] tables")
    axes = sweep_axes(raw_config)
    config = model_config(pc)
    identity = run_identity(pc.model, pc.calibration, pc.seed)
    points = []
    for values, stages in grid(axes):
        label = " + ".join(f"{k} {v}" for k, v in values.items() if v != "–")
        try:
            points.append((values, label or "baseline",
                           plan(stages, config, identity)))
        except ConfigError as e:
            raise ConfigError(f"sweep point {label or 'baseline'}: {e}") from None
    out = check_output(out, input_paths(pc), overwrite)
    with output_lock(out, "sweep"):
        mark_output(out, "sweep")
        return _sweep_into(out, pc, axes, points, identity, progress, threads, resume,
                           overwrite)


def _sweep_into(out: Path, pc, axes: list[Axis], points: list, identity: str, progress: bool,
                threads: int | None, resume: bool, overwrite: bool):
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    base = load(pc.model)
    finished = set()
    calib_ids = calibration_windows(base, pc.calibration)      # one set for every point
    rows = []
    columns = [("label", "Config")] + [(f"axis:{a.name}", a.name) for a in axes]
    preamble = (f"Model `{pc.model}`; grid {' × '.join(f'{a.name} {a.values}' for a in axes)}"
                f" = {len(points)} points. Perplexity: first {pc.eval['ppl_tokens']} tokens of "
                f"{pc.eval['ppl_data'] or 'the corpus test split'}, windows of "
                f"{pc.eval['seqlen']}; tool-call accuracy on {pc.eval['toolcall']} held-out "
                f"examples; cost model: {pc.eval['device']}.")
    with blas_threads(threads or auto_threads(base)):
        for values, label, planned in points:
            exports = out / "exports" / (planned[-1].key[:12] if planned else "baseline")
            ctx = Context(out=exports, calib_ids=calib_ids, progress=progress, seed=pc.seed,
                          overwrite=overwrite)
            _, stage_rows = run_stages(
                base, planned, lambda st: cache / f"{st.key[:16]}_{st.name}", ctx, pc.eval,
                resume=resume, baseline_folder=None if planned else cache / "baseline",
                baseline_key=identity, finished=finished)
            last = stage_rows[-1]
            rows.append({"label": label, "metrics": last.metrics,
                         "seconds": round(sum(r.seconds for r in stage_rows), 2),
                         "folder": last.folder,
                         **{f"axis:{k}": v for k, v in values.items()}})
            write_report(out, "Sweep report", preamble, rows, columns, plots=False)
    return rows, write_report(out, "Sweep report", preamble, rows, columns)
