"""A pipeline config, checked: defaults, the TOML file, option types, and `plan`.

`pipeline_config` validates the top level (model, [eval], [calibration], seed);
`plan` walks the [[stage]] list, merges each stage's options over its defaults
(unknown names and wrong types refused), applies the order rules (nothing is
trained or pruned after quantization; one EoRA term, after a quantize stage) and
calls each stage's check, which predicts the model's config after it. Every
stage gets a key: a hash of everything that produced its input and its options,
data files by their contents (`data_fingerprint`), so `--resume` reuses a stage
only when its result would be the same.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..data.corpus import load_text_corpus
from ..errors import ConfigError, InputError
from .stages import STAGES, require

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
    beside_package = Path(__file__).resolve().parents[2] / path
    return str(beside_package) if beside_package.exists() else str(path)


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
    "data": (str,), "model": (str,), "grid": (str,),
}


def merged_options(defaults: dict, given: dict, where: str) -> dict:
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


@dataclass
class PipelineConfig:
    """The top level of a pipeline config, checked: model, stage tables, eval, calibration, seed."""
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
    ev = merged_options(DEFAULT_EVAL, raw.get("eval", {}), f"{where} [eval]")
    cal = merged_options(DEFAULT_CALIBRATION, raw.get("calibration", {}), f"{where} [calibration]")
    for table, key, low in (("eval", "ppl_tokens", 0), ("eval", "seqlen", 2),
                            ("eval", "toolcall", 0), ("eval", "qa", 0),
                            ("calibration", "samples", 1), ("calibration", "seqlen", 2),
                            ("calibration", "seed", 0)):
        value = (ev if table == "eval" else cal)[key]
        require(value >= low, f"{where} [{table}]", f"{key} must be at least {low}, "
                f"found {value}")
    for table, key in (("eval", "ppl_data"), ("calibration", "data")):
        data = (ev if table == "eval" else cal)[key]
        if data is None:
            continue
        require(Path(data).exists(), f"{where} [{table}]", f"{key} {data!r}: no such file or "
                "folder")
        try:
            load_text_corpus(data)          # UTF-8 text, not empty: read now, not mid-pipeline
        except InputError as e:
            raise ConfigError(f"{where} [{table}] {key}: {e}") from None
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


def model_config(pc: PipelineConfig) -> Config:
    """The config.json of the pipeline's model (ConfigError when the folder has none)."""
    path = Path(pc.model) / "config.json"
    if not path.is_file():
        raise ConfigError(f"model {pc.model}: no such checkpoint folder (config.json missing)")
    return Config.from_file(path)


def input_paths(pc: PipelineConfig) -> list:
    """Everything a pipeline reads: the model folder and the data files (an output
    folder must neither be nor hold any of them)."""
    stage_data = [st.get("data") for st in pc.stages if isinstance(st, dict)]
    return [pc.model, pc.eval["ppl_data"], pc.calibration["data"],
            *(d for d in stage_data if isinstance(d, str))]


@dataclass
class PlannedStage:
    """One stage after `plan`: position, name, checked options, predicted config and key."""
    index: int                 # 1-based position in the pipeline
    name: str
    options: dict              # defaults merged with the config's, validated
    config: Config             # predicted model config after the stage
    key: str = ""              # hash of the input model and every stage up to this one
    given: dict = field(default_factory=dict)   # the options the config spelled out

    @property
    def label(self) -> str:
        """"NN_name", the stage's folder name (e.g. "02_quantize")."""
        return f"{self.index:02d}_{self.name}"


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
        stage = STAGES[name]
        options = merged_options(stage.defaults, given, where)
        if quantized and name in ("finetune", "depth_prune", "width_prune", "lora", "quantize"):
            raise ConfigError(f"{where}: comes after a quantize stage; quantized weights cannot "
                              "be pruned, trained or re-quantized — move it before 'quantize'")
        if name == "eora" and not quantized:
            raise ConfigError(f"{where}: EoRA compensates a quantization error; put a "
                              "'quantize' stage before it")
        if name == "eora" and compensated:
            raise ConfigError(f"{where}: the quantized weights already carry an EoRA term (an "
                              "earlier 'eora' stage or the quantize stage's eora_rank); use one")
        cfg = stage.check(options, cfg, where)
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
