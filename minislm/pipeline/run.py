"""Running a planned pipeline: stage folders, done-markers, resume, evaluation, the report.

Each stage's output is saved under DIR/stages/NN_name/model/ (written to a
temporary sibling and renamed, so a folder that exists is complete), evaluated,
and recorded in DIR/stages/NN_name/done.json: the options, the stage's key, the
evaluation options it was measured with, the metrics and the time. With
`resume`, a stage whose marker has the same key is loaded instead of run (and
only re-measured when the evaluation changed). After every stage the report
(DIR/report.md, report.json, optional PNG plots) is rewritten, so an interrupted
run still leaves one.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..calibration import calibration_batches
from ..checkpoint import atomic_write_text
from ..threads import auto_threads, blas_threads
from ..evaluate.report import options_text, write_report
from ..evaluate.summary import summarize
from ..hardware.cost import estimate
from ..hardware.folder import read_model_folder
from ..loading import load, save
from ..outputs import check_output, mark_output, output_lock
from .config import (PipelineConfig, PlannedStage, input_paths, measurement_key, model_config,
                     pipeline_config, plan, run_identity)
from .stages import STAGES, Context


# ============================================================================ evaluation
def evaluate_stage(model, folder: Path, eval_options: dict, progress: bool = False) -> dict:
    """The report's columns for one saved model, plus the cost model's verdict."""
    metrics = summarize(model, folder, eval_options, progress)
    if eval_options["device"]:
        metrics.update(cost_verdict(folder, eval_options["device"]))
    return metrics


def cost_verdict(folder: Path, device: str) -> dict:
    """The hardware cost model's fit and tokens/s for the saved model on `device`, naming
    the assumed device facts each rests on (the two that move tokens/s most)."""
    info = read_model_folder(folder)
    cfg = info["config"]
    r = estimate(cfg, device, context=min(256, cfg.max_position - 1),
                 weight_bits=info["weight_bits"], sparsity=info["sparsity"],
                 group_size=info["group_size"] if info["group_size"] > 0 else 128,
                 sym=info["sym"], embedding_bits=info["embedding_bits"],
                 eora_rank=info["eora_rank"], assumptions=True)
    fit = r["assumptions"]["fit"]
    moves = lambda e: max(abs(math.log(t / r["tokens_per_s"])) for t in e["tokens_per_s_at"])
    speed = [e["fact"] for e in sorted(r["assumptions"]["effects"], key=moves, reverse=True)
             if e["tokens_per_s"]]
    assumed = lambda facts: "; assumed " + ", ".join(facts[:2]) + (
        f" +{len(facts) - 2}" if len(facts) > 2 else "") if facts else ""
    return {"fits": r["fits"], "device_tok_s": r["tokens_per_s"],
            "verdict": f"{'fits' if r['fits'] else 'does not fit'} {r['device']}"
                       + (f" ({assumed(fit)[2:]})" if fit else "")
                       + f", {r['tokens_per_s']:.0f} tok/s ({r['bottleneck']}{assumed(speed)})"}


# ============================================================================ stage folders
def calibration_windows(model, calibration: dict):
    """A function returning the calibration windows [n, T] of the [calibration] table,
    cut on its first call (a pipeline whose stages need no calibration never reads it)."""
    c = calibration
    return functools.cache(functools.partial(
        calibration_batches, model, c["data"], n_samples=c["samples"],
        seqlen=min(c["seqlen"], model.config.max_position), seed=c["seed"]))


def _save_model_dir(model, folder: Path, overwrite: bool = False) -> None:
    """Save to folder/model via a temporary sibling renamed into place (never half written).

    Only folders minislm wrote (they carry its marker) are replaced, unless `overwrite`.
    """
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
    """One row of the report: a stage (or the baseline), its options, metrics, time and folder."""
    label: str                 # "baseline" or "NN_name"
    stage: str
    options: dict
    metrics: dict
    seconds: float             # time of the stage itself (0 for the baseline)
    resumed: bool = False
    folder: str = ""
    given: dict = field(default_factory=dict)


def _write_marker(folder: Path, st: PlannedStage, metrics: dict, seconds: float,
                  measured: dict) -> None:
    atomic_write_text(folder / "done.json", json.dumps(
        {"stage": st.name, "options": st.options, "key": st.key, "eval": measured,
         "metrics": metrics, "seconds": seconds}, indent=1, default=str) + "\n")


def _baseline_row(model, folder: Path, key: str, eval_options: dict, resume: bool,
                  progress: bool) -> Row:
    """The input model's row, reused when its marker has the same key and measurements."""
    measured = measurement_key(eval_options)
    marker = _marker(folder) if resume else None
    reused = marker is not None and marker.get("key") == key and marker.get("eval") == measured
    if reused:
        metrics = marker["metrics"]
    else:
        metrics = evaluate_stage(model, Path(model.path), eval_options, progress)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "done.json", json.dumps(
            {"key": key, "eval": measured, "metrics": metrics}, indent=1, default=str) + "\n")
    return Row("baseline", "baseline", {}, metrics, 0.0, reused, str(model.path))


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
    rows, measured = [], measurement_key(eval_options)
    if baseline_folder is not None:
        rows.append(_baseline_row(model, baseline_folder, baseline_key, eval_options, resume,
                                  ctx.progress))
        if on_row:
            on_row(rows)
    float_model = None                   # the input of the last quantize stage, for EoRA
    for st in planned:
        folder = folder_of(st)
        if st.name == "quantize":
            float_model = model
        marker = _marker(folder) if resume or folder in (finished or ()) else None
        if marker is not None and marker.get("key") == st.key and (folder / "model").exists():
            model = load(folder / "model")
            seconds, metrics = marker["seconds"], marker["metrics"]
            if marker.get("eval") != measured:              # same model, new measurements
                metrics = evaluate_stage(model, folder / "model", eval_options, ctx.progress)
                _write_marker(folder, st, metrics, seconds, measured)
            resumed = True
        else:
            start = time.perf_counter()
            produced = STAGES[st.name].run(model, st.options,
                                           dataclasses.replace(ctx, float_model=float_model))
            seconds = time.perf_counter() - start
            folder.mkdir(parents=True, exist_ok=True)
            _save_model_dir(produced, folder, ctx.overwrite)
            # go on with what a user gets from the folder, as a resumed run does
            model = load(folder / "model")
            metrics = evaluate_stage(model, folder / "model", eval_options, ctx.progress)
            _write_marker(folder, st, metrics, seconds, measured)
            resumed = False
            if finished is not None:
                finished.add(folder)
        rows.append(Row(st.label, st.name, st.options, metrics, seconds, resumed,
                        str(folder / "model"), st.given))
        if on_row:
            on_row(rows)
    return model, rows


# ============================================================================ compress
def report_rows(rows: list[Row]) -> list[dict]:
    """The rows as the report's JSON records."""
    return [{"label": r.label, "stage": r.stage, "options": r.options,
             "options_text": options_text(r.given), "metrics": r.metrics,
             "seconds": round(r.seconds, 2), "resumed": r.resumed, "folder": r.folder}
            for r in rows]


def compress(raw_config: dict, out, model_path: str | None = None, resume: bool = False,
             progress: bool = True, threads: int | None = None,
             overwrite: bool = False) -> tuple[list[Row], str]:
    """Run a pipeline config into folder `out`; returns (rows, report Markdown).

    Everything is checked before any work (`plan`, and where it may write).
    threads: BLAS threads for the whole run (None: 1 for a small model, see
    `threads.auto_threads`; else the cores no other process is using).
    overwrite: write into a non-empty `out` (or stage folder) minislm did not write.
    Two runs cannot write one `out` at once (`outputs.output_lock`).
    """
    pc = pipeline_config(raw_config, model_path)
    config = model_config(pc)
    identity = run_identity(pc.model, pc.calibration, pc.seed)
    planned = plan(pc.stages, config, identity)
    out = check_output(out, input_paths(pc), overwrite)
    for st in planned:                   # a stage folder holding a user's files: refused now
        check_output(out / "stages" / st.label / "model", overwrite=overwrite,
                     what="stage folder")
    with output_lock(out, "compress"):
        mark_output(out, "compress")
        return _compress_into(out, pc, planned, identity, resume, progress, threads, overwrite)


def _compress_into(out: Path, pc: PipelineConfig, planned: list, identity: str, resume: bool,
                   progress: bool, threads: int | None, overwrite: bool):
    atomic_write_text(out / "pipeline.json", json.dumps(
        {"model": pc.model, "stage": pc.stages, "eval": pc.eval, "calibration": pc.calibration,
         "seed": pc.seed}, indent=1) + "\n")
    model = load(pc.model)
    ctx = Context(out=out, calib_ids=calibration_windows(model, pc.calibration),
                  progress=progress, seed=pc.seed, overwrite=overwrite)
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
