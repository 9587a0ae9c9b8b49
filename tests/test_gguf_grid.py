"""RTN and GPTQ on llama.cpp's grids (Q4_0, Q4_1, Q8_0), written into GGUF blocks as they are."""
import json
import warnings

import numpy as np
import pytest

import minislm
from minislm.cli import main
from minislm.errors import InputError
from minislm.quant import gguf_grid
from minislm.quant.gguf_export import export_gguf, gguf_contents
from minislm.quant.gptq import gptq_quantize
from minislm.quant.model_quant import quantize_model
from minislm.model.quantized import QuantizedTensor
from minislm.quant.rtn import quantize_rtn

from conftest import REPO

TINY = {"llama": REPO / "weights" / "tiny-llama", "gpt2": REPO / "weights" / "tiny-gpt2"}
GRIDS = ("q4_0", "q4_1", "q8_0")


def _calibration(model, seed=0):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (8, 64))


def _correlated(seed, out=48, n_in=96):
    """W [out, in] and H = 2 XᵀX / n of correlated inputs (GPTQ has something to gain)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((512, n_in)) @ rng.standard_normal((n_in, n_in)) * 0.3
    H = (2 * X.T @ X / X.shape[0]).astype(np.float32)
    return rng.standard_normal((out, n_in)).astype(np.float32), H


@pytest.mark.parametrize("grid", GRIDS)
def test_grid_codes_are_llama_cpps_and_clip_outside_the_block(grid):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(3)
    W = (rng.standard_normal((16, 64)) * rng.uniform(0.01, 3, (16, 1))).astype(np.float32)
    qm = quantize_rtn(W, *gguf_grid.GRIDS[grid][:1], 32, gguf_grid.GRIDS[grid][1], grid=grid)
    assert qm.grid == grid and qm.scales.dtype == np.float16
    assert (qm.mins is not None) == (grid == "q4_1")
    ref = gguf.quants.dequantize(gguf.quants.quantize(W, getattr(gguf.GGMLQuantizationType,
                                                                 grid.upper())),
                                 getattr(gguf.GGMLQuantizationType, grid.upper()))
    np.testing.assert_array_equal(qm.dequantize(), ref.reshape(W.shape))   # ŵ as llama.cpp's
    if grid == "q4_0":                      # d = m / −8: the signed extreme is code 0, exactly
        m = np.take_along_axis(W.reshape(-1, 32), np.abs(W.reshape(-1, 32)).argmax(1)[:, None], 1)
        np.testing.assert_array_equal(qm.scales.reshape(-1, 1), (m / -8).astype(np.float16))
        assert np.all(qm.q.reshape(-1, 32)[np.arange(32 * 2 * 16 // 32),
                                          np.abs(W.reshape(-1, 32)).argmax(1)] == 0)
    s, z, lo16, d, lo = gguf_grid.find_params(W[:, :32], grid)
    far = np.float32(1e3) * np.sign(W[:, :1])                # GPTQ-updated values past the range
    q = gguf_grid.codes(np.concatenate([far, -far], 1), d, lo, grid)
    top = 255 if grid == "q8_0" else 15
    assert set(np.unique(q)) <= {0, 1, top}                  # clipped to the extreme codes


def test_gptq_on_the_q4_0_grid_keeps_llama_cpps_scales_and_beats_rtn():
    """The grid of each group is llama.cpp's, taken from the swept (updated) weights;
    GPTQ's error on it is below RTN's on the same grid."""
    errors = []
    for seed in range(3):
        W, H = _correlated(seed)
        res = gptq_quantize(W, H, 4, 32, True, grid="q4_0")
        qm = res.quantized
        assert qm.grid == "q4_0" and qm.dequantize().dtype == np.float32
        assert res.error_gptq < res.error_rtn
        errors.append(res.error_gptq / res.error_rtn)
        # the first group's grid is taken before any update: llama.cpp's d = m / −8 of W
        m = np.take_along_axis(W[:, :32], np.abs(W[:, :32]).argmax(1)[:, None], 1)
        np.testing.assert_array_equal(qm.scales[:, :1], (m / np.float32(-8)).astype(np.float16))
    assert np.mean(errors) < 0.9


def test_gptq_on_grids_refuses_what_the_grid_cannot_hold():
    W, H = _correlated(0)
    with pytest.raises(InputError, match="group size 32"):
        gptq_quantize(W, H, 4, 128, True, grid="q4_0")
    W[:, ::4] = 0.0                                          # pruned
    res = gptq_quantize(W, H, 4, 32, True, grid="q4_0")
    assert np.all(res.quantized.dequantize()[:, ::4] == 0)   # zeros stay zeros (code 8)
    with pytest.raises(InputError, match="no exact zero"):
        gptq_quantize(W, H, 4, 32, False, grid="q4_1")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("grid", GRIDS)
def test_rtn_on_a_grid_exports_the_bytes_llama_cpps_quantizer_writes(family, grid):
    """RTN --grid then export: every quantized tensor's blocks equal gguf.quants.quantize
    of the float weights (the same rows: Conv1D transposed, RoPE rows paired)."""
    gguf = pytest.importorskip("gguf")
    model = minislm.load(TINY[family])
    quantized, _ = quantize_model(model, "rtn", grid=grid, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # nothing is rounded again
        _, tensors = gguf_contents(quantized, grid, exact=True)
    floats = {t[0]: t[3] for t in gguf_contents(model, "f32")[1]}
    qtype = getattr(gguf.GGMLQuantizationType, grid.upper())
    checked = 0
    for name, _, kind, data in tensors:
        if kind == grid:
            np.testing.assert_array_equal(data, gguf.quants.quantize(floats[name], qtype),
                                          err_msg=name)
            checked += 1
    assert checked >= 4 * model.config.n_layer + 1           # every linear, the embedding


@pytest.fixture(scope="module")
def gptq_models():
    out = {}
    for grid in GRIDS:
        model = minislm.load(TINY["llama"])
        out[grid], _ = quantize_model(model, "gptq", grid=grid, calib_ids=_calibration(model),
                                      progress=False, embeddings=True)
    return out


@pytest.mark.parametrize("grid", GRIDS)
def test_gptq_export_reads_back_as_gptqs_weights(gptq_models, grid, tmp_path):
    """Read back by minislm's GGUF reader, every weight equals what minislm computes
    with — GPTQ's dequantized codes — bit for bit: nothing was rounded a second time."""
    quantized = gptq_models[grid]
    assert quantized.extra_config["quantization_config"]["grid"] == grid
    path, _ = export_gguf(quantized, tmp_path / "g.gguf", grid, exact=True)
    back = minislm.load(path)
    for name, value in quantized.params.items():
        want = value if isinstance(value, np.ndarray) else value.dequantize()
        np.testing.assert_array_equal(back.params[name], want, err_msg=name)
    float_size = export_gguf(minislm.load(TINY["llama"]), tmp_path / "f.gguf", "f32")[1]
    assert path.stat().st_size < (0.35 if grid != "q8_0" else 0.6) * float_size


def test_llama_cpp_runs_the_gptq_q4_0_file(gptq_models, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    quantized = gptq_models["q4_0"]
    path, _ = export_gguf(quantized, tmp_path / "g.gguf", "q4_0", exact=True)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=1)
    text = "def add(a, b):\n    return a + b"
    ids = quantized.tokenizer.encode(text).ids
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)])
    ours = minislm.forward(quantized, np.array([ids]))[0]
    # the weights are identical; llama.cpp also quantizes activations to 8 bits (Q8_0)
    assert np.abs(theirs - ours).max() <= 0.05 * float(np.abs(ours).max())


def test_exported_grids_of_plain_minislm_quantizers():
    """Not only --grid: minislm's own sym 4-bit g32 is a Q4_0 grid and its asymmetric
    4-bit g32 a Q4_1 grid when every −s·z is exact in fp16; 4-bit g128 is no GGUF grid."""
    W = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    sym = QuantizedTensor.from_matrix(quantize_rtn(W, 4, 32, True), "out_in")
    assert gguf_grid.to_blocks(sym, "q4_0") is not None and gguf_grid.to_blocks(sym, "q4_1") is None
    asym = QuantizedTensor.from_matrix(quantize_rtn(W, 4, 32, False), "out_in")
    lo = asym._grid(slice(0, 8))[1]
    exact = np.array_equal(lo.astype(np.float16).astype(np.float32), lo)
    assert (gguf_grid.to_blocks(asym, "q4_1") is not None) == exact
    g128 = QuantizedTensor.from_matrix(quantize_rtn(W, 4, 64, True), "out_in")
    assert all(gguf_grid.to_blocks(g128, t) is None for t in GRIDS)


def test_export_of_a_foreign_grid_warns_or_is_refused(tmp_path, capsys):
    """The old export silently re-rounded GPTQ's weights (issue 17 item 6)."""
    model = minislm.load(TINY["llama"])
    quantized, _ = quantize_model(model, "rtn", 4, 128, progress=False)
    with pytest.warns(UserWarning, match="rounded again to q4_0"):
        export_gguf(quantized, tmp_path / "a.gguf", "q4_0")
    with pytest.raises(InputError, match="--grid q4_0"):
        export_gguf(quantized, tmp_path / "b.gguf", "q4_0", exact=True)
    nf4_model, _ = quantize_model(model, "nf4", progress=False)     # NF4 is no GGUF grid
    with pytest.warns(UserWarning, match="method nf4"):
        path, _ = export_gguf(nf4_model, tmp_path / "n.gguf", "q8_0")
    assert minislm.load(path).config.n_layer == model.config.n_layer
    folder = minislm.save(quantized, tmp_path / "q")
    capsys.readouterr()
    assert main(["export-gguf", "--model", str(folder), "--type", "q4_0", "--out",
                 str(tmp_path / "c.gguf")]) == 0
    assert "minislm: warning:" in capsys.readouterr().err
    assert main(["export-gguf", "--model", str(folder), "--type", "q4_0", "--exact", "--out",
                 str(tmp_path / "d.gguf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minislm: error:") and "\n" not in err
    assert not (tmp_path / "d.gguf").exists()


def test_quantize_grid_command_then_exact_export(tmp_path, capsys):
    out = tmp_path / "q"
    calib = tmp_path / "calib.txt"
    calib.write_text("def f(x):\n    return x + 1\n" * 200)
    assert main(["quantize", "--model", str(TINY["llama"]), "--method", "gptq", "--grid", "q4_0",
                 "--calib", str(calib), "--n-samples", "4", "--seq-len", "32",
                 "--out", str(out)]) == 0
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["grid"], qc["bits"], qc["group_size"], qc["sym"]) == ("q4_0", 4, 32, True)
    assert main(["export-gguf", "--model", str(out), "--type", "q4_0", "--exact",
                 "--out", str(tmp_path / "g.gguf")]) == 0
    for bad, message in ((["--method", "awq"], "for rtn or gptq"),
                         (["--method", "rtn", "--bits", "8"], "group size 32")):
        capsys.readouterr()
        assert main(["quantize", "--model", str(TINY["llama"]), *bad, "--grid", "q4_0",
                     "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err


def test_cost_reads_a_q4_1_grid_folder_with_its_minimums(tmp_path):
    """The cost model's sparsity counts ŵ = s·q + lo == 0, not s·(q − 8) == 0."""
    from minislm.hardware.folder import read_model_folder
    from minislm.model import families
    quantized, _ = quantize_model(minislm.load(TINY["llama"]), "rtn", grid="q4_1",
                                  progress=False)
    folder = minislm.save(quantized, tmp_path / "q41")
    zeros = total = 0
    for lin in families.linear_layers(quantized.config, quantized.prefix):
        W = quantized.params[lin.name].dequantize()
        zeros, total = zeros + int(np.count_nonzero(W == 0)), total + W.size
    assert read_model_folder(folder)["sparsity"] == pytest.approx(zeros / total)
    assert zeros / total < 0.01                  # Q4_1 has no zero code: zeros are rare


def test_compress_pipeline_quantizes_on_a_grid_and_exports_it_as_is(tmp_path):
    """A `quantize` stage with grid = "q4_0" and a gguf export of q4_0: no re-rounding."""
    from minislm import pipeline
    text = tmp_path / "text.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 200)
    cfg = {"model": str(TINY["llama"]),
           "eval": {"ppl_tokens": 200, "seqlen": 32, "ppl_data": str(text), "toolcall": 0,
                    "qa": 0, "choice": 0, "speed": False, "device": "siracusa"},
           "calibration": {"samples": 4, "seqlen": 32, "data": str(text)},
           "stage": [{"name": "quantize", "method": "gptq", "grid": "q4_0"},
                     {"name": "export", "formats": ["gguf"], "gguf_type": "q4_0"}]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rows, _ = pipeline.compress(cfg, tmp_path / "out", progress=False)
    quantized = minislm.load(rows[-1].folder)
    assert quantized.extra_config["quantization_config"]["grid"] == "q4_0"
    back = minislm.load(tmp_path / "out" / "export" / "model-q4_0.gguf")
    name = "model.layers.2.mlp.down_proj.weight"
    np.testing.assert_array_equal(back.params[name], quantized.params[name].dequantize())
    bad = dict(cfg, stage=[{"name": "quantize", "method": "awq", "grid": "q4_0"}])
    with pytest.raises(minislm.errors.ConfigError, match="grid must be one of"):
        pipeline.compress(bad, tmp_path / "bad", progress=False)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_blocks_decode_to_gptqs_weights(grid, act_order):
    """to_blocks of a GPTQ result (act-order's static groups too) decodes, by gguf-py's
    reference dequantizer, to exactly the weights GPTQ reports."""
    gguf = pytest.importorskip("gguf")
    W, H = _correlated(5)
    bits, sym = gguf_grid.GRIDS[grid]
    qm = gptq_quantize(W, H, bits, 32, sym, act_order=act_order, grid=grid).quantized
    blocks = gguf_grid.to_blocks(QuantizedTensor.from_matrix(qm, "out_in"), grid)
    qtype = getattr(gguf.GGMLQuantizationType, grid.upper())
    np.testing.assert_array_equal(gguf.quants.dequantize(blocks, qtype), qm.dequantize())
