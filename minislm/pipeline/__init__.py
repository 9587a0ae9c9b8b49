"""The staged compression pipeline behind `minislm compress` (grids: `minislm.sweep`).

The LLaMA thesis compresses in the order depth → width → LoRA → GPTQ → EoRA;
the GPT-2 slides fine-tune → trim → prune → quantize. Here every step is a
*stage*: its default options, a check and a run around one technique, and a
pipeline is any sequence of stages (each optional, repeats allowed), in TOML:

    model = "weights/tiny-gpt2"
    [[stage]]
    name = "depth_prune"      # finetune depth_prune width_prune lora quantize eora export
    layers = 2
    [[stage]]
    name = "quantize"
    method = "gptq"
    bits = 4
    group_size = 32

Read in this order:
  config.py   the config checked before any work (`pipeline_config`, `plan`): unknown
              stage or option, impossible ratio, N ≥ M, a group size or M that does
              not divide a layer's width, EoRA without a quantize stage, … all raise
              ConfigError naming the stage and the field; each stage's key
  stages.py   each stage's defaults, check and run, side by side (`STAGES`)
  run.py      `compress`: stage folders, done-markers, resume, evaluation, the report
"""
from .config import (DEFAULT_CALIBRATION, DEFAULT_EVAL, DEFAULT_MODEL, DEFAULT_PIPELINE,
                     PipelineConfig, PlannedStage, data_fingerprint, input_paths, load_config,
                     measurement_key, model_config, pipeline_config, plan, resolve_model,
                     run_identity)
from .run import Row, calibration_windows, compress, evaluate_stage, report_rows, run_stages
from .stages import STAGES, Context, Stage, parse_scheme, require

__all__ = ["DEFAULT_CALIBRATION", "DEFAULT_EVAL", "DEFAULT_MODEL", "DEFAULT_PIPELINE", "STAGES",
           "Context", "PipelineConfig", "PlannedStage", "Row", "Stage", "calibration_windows",
           "compress", "data_fingerprint", "evaluate_stage", "input_paths", "load_config",
           "measurement_key", "model_config", "parse_scheme", "pipeline_config", "plan",
           "report_rows", "require", "resolve_model", "run_identity", "run_stages"]
