"""Hugging Face folders in and out: `load`, `save`, `download`.

`load` maps a folder (config.json + *.safetensors [+ tokenizer.json]) to a
`Model` whose params keep the checkpoint's tensor names and shapes, checking
every expected tensor: present, right shape, finite. `save` writes a folder
`transformers.AutoModelForCausalLM.from_pretrained` loads, every file atomically.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from . import resources, threads
from .checkpoint import (PICKLE_SUFFIXES, atomic_write_bytes, atomic_write_text,
                         checkpoint_files, read_checkpoint, read_header, write_safetensors)
from .config import Config
from .errors import CheckpointError, InputError, NumericalError
from .model import Model, families
from .model.quantized import load_quantized   # quantized linears, dequantized on the fly
from .tokenizer import TOKENIZER_FILES, load_tokenizer

MASKS_FILE = "masks.safetensors"


def resolve_folder(path) -> Path:
    """A checkpoint folder from a path; a single pickle file is refused with an explanation."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected a checkpoint folder path, found {type(path).__name__}")
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path}: pickle checkpoints can run arbitrary code when "
                                  "loaded; minislm refuses them (use safetensors)")
        if path.name == "config.json" or path.suffix == ".safetensors":
            return path.parent
        raise CheckpointError(f"{path}: expected a Hugging Face checkpoint folder")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    return path


def check_finite(name: str, arr: np.ndarray, where) -> None:
    """Raise NumericalError naming the tensor when a float array holds NaN or Inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise NumericalError(f"{where}: tensor '{name}' contains {bad} NaN/Inf values")


def load(path, dtype=np.float32) -> Model:
    """Load an HF folder (or a .gguf file) as a Model with float `dtype` weights (float32
    default, float64 for tests)."""
    if isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(".gguf"):
        from .gguf.convert import load_gguf
        return load_gguf(path, dtype)
    folder = resolve_folder(path)
    files = checkpoint_files(folder)            # refuses pickle-only folders first
    config = Config.from_file(folder / "config.json")
    raw_config = config.raw
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise InputError(f"load: dtype must be a floating-point type such as np.float32, "
                         f"found {dtype!r}")
    entries = [e for p in files for e in read_header(p)[0].values()]
    # A config describing a far bigger model than the files hold (say n_layer = 10**15) is
    # refused here, before the per-tensor checks below enumerate its layers. Slack: 2x, and
    # 16x when packed sub-byte codes hold several weights per stored value.
    stored = sum(math.prod(e["shape"]) for e in entries)
    implied = resources.parameter_count(config)
    if implied > 2 * stored * (8 if raw_config.get("quantization_config") else 1):
        raise CheckpointError(f"{folder}: config.json describes a model of {implied:,} "
                              f"parameters but the safetensors files hold {stored:,} values "
                              "(does config.json belong to these weights?)")
    resources.check_load(folder, config, entries, dtype.itemsize)   # before any allocation
    tensors, metadata = read_checkpoint(folder, dtype=dtype)
    for name, arr in tensors.items():       # every float tensor, incl. quantization scales
        check_finite(name, arr, folder)
    quant = raw_config.get("quantization_config")
    if isinstance(quant, dict) and quant.get("quant_method") == "minislm":
        tensors = load_quantized(raw_config, tensors)
    elif quant is not None:
        raise CheckpointError(f"{folder / 'config.json'}: quantization_config with "
                              f"quant_method {quant.get('quant_method') if isinstance(quant, dict) else quant!r} "
                              "is not supported (only minislm's own format)")
    prefix = families.detect_prefix(config, tensors)
    expected = families.expected_shapes(config, prefix)
    params = {}
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{folder}: tensor '{name}' is missing (expected shape "
                                  f"{shape} for this {config.family} config)")
        arr = tensors[name]
        if tuple(arr.shape) != shape:
            raise CheckpointError(f"{folder}: tensor '{name}' has shape {tuple(arr.shape)}, "
                                  f"config.json implies {shape}")
        if isinstance(arr, np.ndarray):
            if arr.dtype.kind != "f":
                raise CheckpointError(f"{folder}: tensor '{name}' has dtype {arr.dtype}, "
                                      "expected a floating-point type")
        params[name] = arr
    unexpected = [n for n in tensors if n not in expected and not families.ignorable(config, n)]
    if unexpected:
        raise CheckpointError(f"{folder}: unexpected tensors {unexpected[:5]} (not part of a "
                              f"{config.family} model with this config)")
    model = Model(config=config, params=params, prefix=prefix, path=folder.resolve(),
                  tokenizer=load_tokenizer(folder, config.vocab_size))
    masks_path = folder / MASKS_FILE
    if masks_path.exists():
        from .checkpoint import read_safetensors
        masks = dict(read_safetensors(masks_path))
        for name, mask in masks.items():
            if name not in params or tuple(mask.shape) != tuple(params[name].shape):
                raise CheckpointError(f"{masks_path}: mask '{name}' of shape {mask.shape} does "
                                      "not match a weight of the model (same name and shape)")
        model.extra_tensors["masks"] = masks
    for key in ("quantization_config", "sparsity_config"):
        if key in raw_config:
            model.extra_config[key] = raw_config[key]
    threads.apply(model)              # BLAS threads for this model on this machine now
    return model


def save(model: Model, path, bf16: bool = False) -> Path:
    """Write `model` as an HF folder: config.json, model.safetensors, tokenizer files.

    Refuses to write into the folder the model was loaded from (inputs are never
    modified). Every file is written to a temporary name and renamed into place.
    """
    out = Path(path)
    if model.path is not None and out.exists() and out.resolve() == Path(model.path).resolve():
        raise CheckpointError(f"{out}: refusing to overwrite the checkpoint the model was "
                              "loaded from; choose another output folder")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, value in model.params.items():
        if isinstance(value, np.ndarray):
            tensors[name] = value
        else:
            tensors.update(value.state_dict(name))  # compressed tensors store their parts
    config = model.config.to_hf_dict()
    config.update(model.extra_config)
    write_safetensors(out / "model.safetensors", tensors, metadata={"format": "pt"}, bf16=bf16)
    if bf16:
        config["torch_dtype"] = "bfloat16"
    index = out / "model.safetensors.index.json"
    if index.exists():  # an old sharded index would point at stale shards
        os.unlink(index)
    masks = model.extra_tensors.get("masks")
    if masks:
        write_safetensors(out / MASKS_FILE, {k: np.asarray(v, dtype=np.uint8)
                                             for k, v in masks.items()})
    elif (out / MASKS_FILE).exists():   # left by an earlier save: would re-mask this model
        os.unlink(out / MASKS_FILE)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_tokenizer(model, out)
    return out


def save_tokenizer(model: Model, out: Path) -> None:
    """Write the in-memory tokenizer as tokenizer.json; keep the source's tokenizer_config.json."""
    src = Path(model.path) if model.path is not None else None
    for name in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                 "vocab.json", "merges.txt"):
        if src is not None and (src / name).exists() and \
                (src / name).resolve() != (out / name).resolve():
            atomic_write_bytes(out / name, (src / name).read_bytes())
    if model.tokenizer is None:
        return
    atomic_write_text(out / "tokenizer.json", model.tokenizer.to_str())
    if not (out / "tokenizer_config.json").exists():
        vocab = {i: t for t, i in model.tokenizer.get_vocab(with_added_tokens=True).items()}
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast",
               "model_max_length": model.config.max_position}
        eos = model.config.eos_ids
        if eos and eos[0] in vocab:
            cfg["eos_token"] = vocab[eos[0]]
        if model.config.bos_token_id in vocab:
            cfg["bos_token"] = vocab[model.config.bos_token_id]
        atomic_write_text(out / "tokenizer_config.json", json.dumps(cfg, indent=2) + "\n")


def download(repo_id: str, revision: str | None = None, out_dir="weights",
             allow_pickle: bool = False) -> Path:
    """Fetch an HF checkpoint (safetensors, config, tokenizer) into out_dir/<repo name>.

    Only safetensors weights are requested; the revision is resolved to a commit
    hash first and pinned, and every file huggingface_hub reports is checked to
    exist with its reported size after download. Files land in `<name>.partial`
    first and the folder is renamed into place only once verified, so a failed or
    interrupted download never leaves a folder that looks complete (rerunning
    continues the partial one).
    """
    from huggingface_hub import HfApi, snapshot_download
    api = HfApi()
    info = api.model_info(repo_id, revision=revision, files_metadata=True)
    files = [s.rfilename for s in (info.siblings or [])]
    if not any(f.endswith(".safetensors") for f in files):
        raise CheckpointError(f"{repo_id}: the repository has no *.safetensors weights "
                              f"(files: {files[:10]}); minislm never loads pickle checkpoints")
    patterns = ["*.safetensors", "*.json", "merges.txt", "vocab.json", "*.txt"]
    target = Path(out_dir) / repo_id.replace("/", "--")
    partial = target.with_name(target.name + ".partial")
    local = snapshot_download(repo_id, revision=info.sha, local_dir=str(partial),
                              allow_patterns=patterns)
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if not any(Path(name).match(p) for p in patterns):
            continue
        p = Path(local) / name
        if not p.exists():
            raise CheckpointError(f"{repo_id}@{info.sha}: file '{name}' was not downloaded")
        if sibling.size is not None and p.stat().st_size != sibling.size:
            raise CheckpointError(f"{repo_id}@{info.sha}: file '{name}' has "
                                  f"{p.stat().st_size} bytes, the hub reports {sibling.size}")
    atomic_write_text(Path(local) / "REVISION", f"{repo_id}@{info.sha}\n")
    if target.exists():                     # an older download of the same repository
        shutil.rmtree(target)
    os.replace(local, target)
    return target
