"""The compression pipeline: up-front validation, stage folders and done-markers,
resume, the report, sweeps with shared prefixes, and the CLI commands.

Models are tiny random checkpoints (see test_eval.tiny_model); evaluation is
cut to a few hundred tokens so each pipeline runs in seconds.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minislm
from minislm import pipeline, sweep
from minislm.config import Config
from minislm.errors import ConfigError

from test_eval import tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model and, beside it, a small text for calibration and perplexity (building
    the default corpus takes seconds; these tests only need some text)."""
    from minislm.data.tasks import task_texts
    folder = tmp_path_factory.mktemp("pipe")
    (folder / "text.txt").write_text("\n".join(task_texts("toolcall")[:300]))
    return tiny_model(folder / "gpt2", n_layer=3, d_model=32, d_ff=64)


def config(model_dir, *stages, **top):
    text = str(model_dir.parent / "text.txt")
    return {"model": str(model_dir),
            "eval": {"ppl_tokens": 200, "seqlen": 32, "ppl_data": text, "toolcall": 0, "qa": 0,
                     "choice": 0, "speed": False, "device": "siracusa"},
            "calibration": {"samples": 4, "seqlen": 32, "data": text},
            "stage": list(stages), **top}


@pytest.mark.parametrize("stage, match", [
    ({"name": "distill_everything"}, "unknown stage"),
    ({"name": "quantize", "bitz": 4}, "unknown option"),
    ({"name": "depth_prune", "layers": 3}, "layers"),
    ({"name": "width_prune", "nm": "4:4"}, "0 < N < M"),
    ({"name": "width_prune", "nm": "5:8"}, None),
    ({"name": "width_prune", "nm": "1:3"}, "does not divide"),
    ({"name": "width_prune", "sparsity": 1.2}, r"\[0, 1\)"),
    ({"name": "width_prune", "nm": "2:4", "sparsity": 0.5}, "exactly one"),
    ({"name": "quantize", "group_size": 48}, "group_size 48 does not divide"),
    ({"name": "quantize", "bits": 1}, "bits"),
    ({"name": "quantize", "scheme": "int3-gx"}, "scheme"),
    ({"name": "eora", "rank": 4}, "put a 'quantize' stage before"),
    ({"name": "export", "formats": ["onnx"]}, "formats"),
])
def test_bad_configs_fail_before_any_work(model_dir, tmp_path, stage, match):
    out = tmp_path / "out"
    cfg = config(model_dir, stage)
    if match is None:                          # a valid stage: planning succeeds
        planned = pipeline.plan(cfg["stage"], Config.from_file(model_dir / "config.json"), "m")
        assert planned[0].options["nm"] == "5:8"
        return
    with pytest.raises(ConfigError, match=match):
        pipeline.compress(cfg, out, progress=False)
    assert not out.exists()


def test_order_rules(model_dir, tmp_path):
    cfg = config(model_dir, {"name": "quantize", "method": "rtn", "group_size": 32},
                 {"name": "width_prune", "nm": "2:4"})
    with pytest.raises(ConfigError, match="after a quantize stage"):
        pipeline.compress(cfg, tmp_path / "o", progress=False)
    with pytest.raises(ConfigError, match="unknown top-level"):
        pipeline.compress({"modle": "x"}, tmp_path / "o", progress=False)


def test_depth_check_predicts_shape(model_dir):
    cfg = Config.from_file(model_dir / "config.json")
    planned = pipeline.plan([{"name": "depth_prune", "layers": 2},
                             {"name": "quantize", "group_size": 32}], cfg, "m")
    assert planned[0].config.n_layer == 1 and planned[0].key != planned[1].key


def test_compress_runs_saves_and_resumes(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg = config(model_dir, {"name": "width_prune", "method": "wanda", "nm": "2:4"},
                 {"name": "quantize", "method": "rtn", "bits": 8, "group_size": 32},
                 {"name": "export", "formats": ["hf"]})
    rows, report = pipeline.compress(cfg, out, progress=False)
    assert [r.label for r in rows] == ["baseline", "01_width_prune", "02_quantize", "03_export"]
    for r in rows[1:]:
        assert (out / "stages" / r.label / "done.json").exists()
        assert (out / "stages" / r.label / "model" / "config.json").exists()
    pruned = minislm.load(out / "stages" / "01_width_prune" / "model")
    W = pruned.params["transformer.h.0.mlp.c_fc.weight"].T          # [out, in]
    assert np.all((W.reshape(W.shape[0], -1, 4) == 0).sum(-1) >= 2)  # every group of 4: 2 zeros
    assert rows[1].metrics["params_nonzero"] < rows[0].metrics["params_nonzero"]
    assert rows[2].metrics["bytes"] < rows[1].metrics["bytes"]      # int8 codes on disk
    assert all(np.isfinite(r.metrics["perplexity"]) for r in rows)
    assert (out / "export" / "hf" / "config.json").exists()
    text = (out / "report.md").read_text()
    assert "| 02_quantize |" in text and "PPL" in text and text == report
    assert "fits" in rows[0].metrics["verdict"]
    assert "; assumed " in rows[0].metrics["verdict"]       # issue 13 item 14

    def boom(*a, **k):
        raise AssertionError("a finished stage was run again")
    for name in ("width_prune", "quantize", "export"):
        monkeypatch.setitem(pipeline.STAGES, name, pipeline.STAGES[name]._replace(run=boom))
    again, _ = pipeline.compress(cfg, out, resume=True, progress=False)
    assert all(r.resumed for r in again)
    assert [r.metrics for r in again] == [r.metrics for r in rows]
    cfg["eval"]["ppl_tokens"] = 120                 # new measurements, same models: no stage runs
    remeasured, _ = pipeline.compress(cfg, out, resume=True, progress=False)
    assert all(r.resumed for r in remeasured[1:])
    assert remeasured[1].metrics["perplexity"] != rows[1].metrics["perplexity"]
    cfg["calibration"]["samples"] = 3               # different calibration: WANDA must run again
    with pytest.raises(AssertionError, match="run again"):
        pipeline.compress(cfg, out, resume=True, progress=False)


def test_resume_redoes_a_changed_stage(model_dir, tmp_path):
    out = tmp_path / "out"
    first = config(model_dir, {"name": "quantize", "method": "rtn", "bits": 8, "group_size": 32})
    pipeline.compress(first, out, progress=False)
    second = config(model_dir, {"name": "quantize", "method": "rtn", "bits": 4, "group_size": 32})
    rows, _ = pipeline.compress(second, out, resume=True, progress=False)
    assert rows[0].resumed and not rows[1].resumed
    assert json.loads((out / "stages" / "01_quantize" / "done.json").read_text()
                      )["options"]["bits"] == 4


def test_eora_after_gptq_brings_logits_back(model_dir, tmp_path):
    """The EoRA stage's model is closer to the float model than the quantized one."""
    cfg = config(model_dir, {"name": "quantize", "method": "gptq", "bits": 3, "group_size": 32},
                 {"name": "eora", "rank": 8})
    rows, _ = pipeline.compress(cfg, tmp_path / "out", progress=False)
    base, quant, eora = (minislm.load(r.folder) for r in rows)
    ids = base.tokenizer.encode(Path(cfg["eval"]["ppl_data"]).read_text()[:400]).ids[:64]
    z = [minislm.forward(m, np.array([ids])) for m in (base, quant, eora)]
    err_quant, err_eora = (float(np.mean((zi - z[0]) ** 2)) for zi in z[1:])
    assert err_eora < err_quant
    assert eora.extra_config["quantization_config"]["eora_rank"] == 8
    assert rows[2].metrics["bytes"] > rows[1].metrics["bytes"]        # + the A, B factors


def test_report_nonzeros_never_rise_after_pruning(model_dir, tmp_path):
    """Issue 13 item 7, the README's main job in small: WANDA 2:4 → GPTQ → EoRA. GPTQ keeps
    the pruned zeros (#Nonzero does not rise), and EoRA's dense factors appear in their own
    #Low-rank column instead of inflating #Nonzero."""
    cfg = config(model_dir, {"name": "width_prune", "method": "wanda", "nm": "2:4"},
                 {"name": "quantize", "method": "gptq", "bits": 4, "group_size": 32},
                 {"name": "eora", "rank": 4})
    rows, report = pipeline.compress(cfg, tmp_path / "out", progress=False)
    nonzero = [r.metrics["params_nonzero"] for r in rows]
    assert nonzero[1] < nonzero[0] and nonzero[3] <= nonzero[2] <= nonzero[1], nonzero
    assert "params_low_rank" not in rows[2].metrics and rows[3].metrics["params_low_rank"] > 0
    assert "#Low-rank" in report
    quantized = minislm.load(rows[2].folder)
    for name, keep in quantized.extra_tensors["masks"].items():
        qt = quantized.params[name]
        base = qt.dequantize_rows(0, qt.n_out).T                      # GPT-2: checkpoint layout
        assert np.count_nonzero(base[keep == 0]) == 0, name


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_every_stage_runs(tmp_path, family, model_dir):
    """finetune → depth → Minitron → SparseGPT 2:4 → LoRA → AWQ → EoRA → export."""
    folder = tiny_model(tmp_path / family, family, n_layer=3, d_model=32, d_ff=64)
    text = str(model_dir.parent / "text.txt")
    cfg = config(model_dir,
                 {"name": "finetune", "steps": 2, "data": text, "seq_len": 32, "batch_size": 2},
                 {"name": "depth_prune", "layers": 1, "method": "block"},
                 {"name": "width_prune", "method": "minitron", "mlp": 0.25,
                  "heads": 0.5 if family == "llama" else 0.0},
                 {"name": "width_prune", "method": "sparsegpt", "nm": "2:4"},
                 {"name": "lora", "rank": 2, "steps": 2, "data": text, "seq_len": 32,
                  "batch_size": 2},
                 {"name": "quantize", "method": "awq", "bits": 4, "group_size": 16},
                 {"name": "eora", "rank": 2},
                 {"name": "export", "formats": ["hf", "gguf"], "gguf_type": "q8_0"})
    cfg["model"] = str(folder)
    rows, _ = pipeline.compress(cfg, tmp_path / "out", progress=False)
    final = minislm.load(rows[-1].folder)
    assert final.config.n_layer == 2 and final.config.d_ff == 48
    assert rows[5].metrics["params_nonzero"] == rows[4].metrics["params_nonzero"]  # masks kept
    assert rows[4].metrics["params_nonzero"] < rows[3].metrics["params_nonzero"]
    assert rows[6].metrics["bytes"] < rows[5].metrics["bytes"]
    assert (tmp_path / "out" / "export" / "model-q8_0.gguf").stat().st_size > 0


def test_sweep_grid_shares_prefixes(model_dir, tmp_path):
    raw = config(model_dir)
    del raw["stage"]
    raw["sweep"] = {"axis": [
        {"name": "N:M", "stage": "width_prune", "key": "nm", "values": ["none", "2:4"],
         "options": {"method": "wanda"}},
        {"name": "Quant", "stage": "quantize", "key": "scheme",
         "values": ["none", "int8", "int4-g32", {"label": "EoRA", "scheme": "int4-g32",
                                                 "eora_rank": 2, "method": "gptq"}],
         "options": {"method": "rtn"}}]}
    rows, text = sweep.sweep(raw, tmp_path / "sw", progress=False)
    assert [r["label"] for r in rows] == [
        "baseline", "Quant int8", "Quant int4-g32", "Quant EoRA", "N:M 2:4",
        "N:M 2:4 + Quant int8", "N:M 2:4 + Quant int4-g32", "N:M 2:4 + Quant EoRA"]
    folders = sorted(p.name.split("_")[-1] for p in (tmp_path / "sw" / "cache").iterdir())
    assert folders == ["baseline", "prune"] + ["quantize"] * 6     # width_prune ran once
    eora = minislm.load(rows[3]["folder"])
    assert eora.extra_config["quantization_config"]["eora_rank"] == 2
    sizes = {r["label"]: r["metrics"]["bytes"] for r in rows}
    assert sizes["Quant int4-g32"] < sizes["Quant int8"] < sizes["baseline"]
    assert "| N:M 2:4 + Quant int8 | 2:4 | int8 |" in text
    bad = dict(raw, sweep={"axis": [{"name": "D", "stage": "depth_prune", "key": "layers",
                                     "values": [0, 5]}]})
    with pytest.raises(ConfigError, match="sweep point D 5"):
        sweep.sweep(bad, tmp_path / "sw2", progress=False)


def test_shipped_configs_parse():
    for path in sorted((REPO / "configs").glob("*.toml")):
        raw = pipeline.load_config(path)
        pc = pipeline.pipeline_config(raw, where=str(path))
        if "sweep" in raw:
            assert sweep.grid(sweep.sweep_axes(raw, str(path)))
        model = REPO / pc.model
        if (model / "config.json").exists():
            if "sweep" in raw:
                for _, stages in sweep.grid(sweep.sweep_axes(raw)):
                    pipeline.plan(stages, Config.from_file(model / "config.json"), "m")
            else:
                pipeline.plan(pc.stages, Config.from_file(model / "config.json"), "m")


def test_default_config_file_matches_builtin():
    path = REPO / "configs" / "default.toml"
    if not path.exists():
        pytest.skip("configs/default.toml not written")
    raw = pipeline.load_config(path)
    assert raw["stage"] == pipeline.DEFAULT_PIPELINE["stage"]
    assert raw["eval"] == pipeline.DEFAULT_PIPELINE["eval"]


def test_compress_cli_errors(model_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'model = "{model_dir}"\n[[stage]]\nname = "width_prune"\nnm = "8:4"\n')
    done = subprocess.run([sys.executable, "-m", "minislm", "compress", "--config", str(bad),
                           "--out", str(tmp_path / "o"), "--no-log"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and "0 < N < M" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()
    bad.write_text("model = [unclosed\n")
    done = subprocess.run([sys.executable, "-m", "minislm", "sweep", "--config", str(bad),
                           "--out", str(tmp_path / "o"), "--no-log"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_resume_notices_edited_data_files(model_dir, tmp_path):
    """issue 13 item 4: keys held the *paths* of calibration.data and ppl_data, so an edited
    calib.txt left a resumed GPTQ stage with the old perplexity. Keys hold the contents."""
    text = (model_dir.parent / "text.txt").read_text()
    calib, ppl = tmp_path / "calib.txt", tmp_path / "ppl.txt"
    calib.write_text(text)
    ppl.write_text(text)
    cfg = config(model_dir, {"name": "quantize", "method": "gptq", "bits": 3, "group_size": 32})
    cfg["calibration"]["data"], cfg["eval"]["ppl_data"] = str(calib), str(ppl)
    out = tmp_path / "out"
    first, _ = pipeline.compress(cfg, out, progress=False)
    calib.write_text(text[::-1])                        # same path, same size, new contents
    again, _ = pipeline.compress(cfg, out, resume=True, progress=False)
    assert not again[1].resumed                         # GPTQ ran on the new calibration text
    assert again[1].metrics["perplexity"] != first[1].metrics["perplexity"]
    lines = text.splitlines()
    ppl.write_text("\n".join(lines[len(lines) // 2:] + lines[:len(lines) // 2]))
    remeasured, _ = pipeline.compress(cfg, out, resume=True, progress=False)
    assert remeasured[1].resumed                        # the same model ...
    assert remeasured[1].metrics["perplexity"] != again[1].metrics["perplexity"]  # new text


def test_sweep_reuses_earlier_runs_only_with_resume(model_dir, tmp_path, monkeypatch):
    """issue 13 item 4: `sweep` reused its cache from an earlier run even without --resume."""
    raw = config(model_dir)
    del raw["stage"]
    raw["sweep"] = {"axis": [{"name": "Quant", "stage": "quantize", "key": "bits",
                              "values": [8], "options": {"method": "rtn", "group_size": 32}}]}
    sweep.sweep(raw, tmp_path / "sw", progress=False)
    runs = []
    quantize = pipeline.STAGES["quantize"]
    monkeypatch.setitem(pipeline.STAGES, "quantize",
                        quantize._replace(run=lambda *a: runs.append(1) or quantize.run(*a)))
    sweep.sweep(raw, tmp_path / "sw", progress=False)
    assert runs == [1]                                  # computed afresh
    sweep.sweep(raw, tmp_path / "sw", progress=False, resume=True)
    assert runs == [1]                                  # reused


@pytest.mark.parametrize("stages, match", [
    ([{"name": "quantize", "method": "rtn", "group_size": 32}, {"name": "eora", "rank": 2},
      {"name": "eora", "rank": 2}], "already carry an EoRA term"),
    ([{"name": "quantize", "method": "rtn", "group_size": 32, "eora_rank": 2},
      {"name": "eora", "rank": 2}], "already carry an EoRA term"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "lora", "steps": 1, "batch_size": 0}], "batch_size"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "finetune", "steps": 1, "batch_size": 0}], "batch_size must be a positive"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "lora", "steps": 1, "targets": ["no_such_proj"]}], "match no linear"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "lora", "steps": 1, "rank": 1000}], "exceeds min"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "lora", "steps": 1, "alpha": float("nan")}], "alpha"),
    ([{"name": "width_prune", "method": "magnitude", "sparsity": 0.5},
      {"name": "finetune", "steps": 1, "lr": float("inf")}], "lr"),
])
def test_every_check_comes_before_any_stage_folder(model_dir, tmp_path, stages, match):
    """issue 13 item 20: two eora stages, eora_rank plus an eora stage and finetune
    batch_size = 0 were refused only after earlier stage folders had been written."""
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=match):
        pipeline.compress(config(model_dir, *stages), out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("content, match", [(None, "no such file"), (b"  \n", "empty"),
                                            (b"\xff\xfe text", "UTF-8")])
def test_bad_data_files_are_refused_before_any_work(model_dir, tmp_path, content, match):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    for table, key in (("eval", "ppl_data"), ("calibration", "data")):
        cfg = config(model_dir, {"name": "width_prune", "method": "wanda", "nm": "2:4"})
        cfg[table][key] = str(path)
        with pytest.raises(ConfigError, match=match):
            pipeline.compress(cfg, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage, match", [
    ('name = "lora"\nalpha = nan\nseq_len = 32', "alpha"),
    ('name = "lora"\nlr = inf\nseq_len = 32', "lr"),
    ('name = "finetune"\nlr = inf\nseq_len = 32', "lr"),
])
def test_non_finite_training_numbers_in_toml_fail_before_any_work(model_dir, tmp_path, stage,
                                                                  match):
    """`alpha = nan` once left a NaN model in stages/01_lora/model."""
    toml = tmp_path / "c.toml"
    toml.write_text(f'[[stage]]\n{stage}\n')
    cfg = config(model_dir, *pipeline.load_config(toml)["stage"])
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=f"stage 1 .*{match}"):
        pipeline.compress(cfg, out, progress=False)
    assert not out.exists()
