"""Hardware cost model: counts, byte formats, roofline and Siracusa invariants, CLI."""
import argparse
import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minislm.config import Config
from minislm.errors import ConfigError, InputError, MinislmError
from minislm.hardware import DEVICES, estimate, get_device, parameter_count
from minislm.hardware.cost import roofline_op
from minislm.hardware.devices import Device, Fact
from minislm.hardware.workload import (Op, WeightFormat, matrix_bytes, step_ops,
                                       stored_weight_bytes)

from conftest import data_file

MiB = 2 ** 20


def shared_config(name):
    return Config.from_file(data_file(f"configs/{name}.config.json"))


def tiny_llama(**kw):
    d = dict(model_type="llama", vocab_size=96, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
             max_position_embeddings=256, tie_word_embeddings=False)
    d.update(kw)
    return Config.from_hf_dict(d)


def tiny_gpt2(**kw):
    d = dict(model_type="gpt2", vocab_size=80, n_embd=32, n_layer=2, n_head=4, n_positions=256)
    d.update(kw)
    return Config.from_hf_dict(d)


# ----------------------------------------------------------------------------- counts
def test_parameter_count_of_the_shared_configs():
    assert parameter_count(shared_config("gpt2-124m")) == 124_439_808
    assert parameter_count(shared_config("llama-3.2-1b")) == 1_235_814_400


@pytest.mark.parametrize("make", [
    lambda: tiny_gpt2(),
    lambda: tiny_llama(),
    lambda: tiny_llama(tie_word_embeddings=True, num_key_value_heads=1, head_dim=16),
    lambda: tiny_llama(attention_bias=True, mlp_bias=True),
])
def test_parameter_count_and_float_bytes_match_transformers(make):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = make()
    d = config.to_hf_dict()
    d.pop("rope_parameters", None)
    torch.manual_seed(0)
    if config.family == "gpt2":
        ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(**d))
    else:
        ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**d))
    n_ref = sum(p.numel() for p in ref.parameters())           # tied weights counted once
    assert parameter_count(config) == n_ref
    assert sum(stored_weight_bytes(config, WeightFormat(32)).values()) == 4 * n_ref


def test_decode_step_counts_every_weight_once_and_the_cache():
    config = tiny_llama()
    C, F, V, H, K, D = 32, 48, 96, 4, 2, 8
    p = 10
    ops = step_ops(config, WeightFormat(32), n=1, p=p, act_bytes=4)
    linear_macs = sum(op.macs for op in ops if op.kind == "linear")
    per_block = C * H * D + 2 * C * K * D + H * D * C + 3 * C * F
    assert linear_macs == config.n_layer * per_block + C * V
    attn = [op for op in ops if op.kind == "attention"]
    assert len(attn) == 2 * config.n_layer
    assert all(op.macs == H * D * (p + 1) for op in attn)
    # each attention product reads K (or V) for p + 1 positions and writes the new one
    assert all(op.kv_bytes == 4 * K * D * (p + 2) for op in attn)


def test_prefill_attention_counts_the_causal_triangle():
    config = tiny_gpt2()
    T = 7
    ops = step_ops(config, WeightFormat(32), n=T, p=0, act_bytes=4)
    scores = [op for op in ops if op.name == "attn_scores"]
    assert all(op.macs == 4 * 8 * T * (T + 1) / 2 for op in scores)
    head = [op for op in ops if op.name == "lm_head"][0]
    assert head.macs == 32 * 80                                  # last position only
    all_head = [op for op in step_ops(config, WeightFormat(32), T, 0, 4, all_logits=True)
                if op.name == "lm_head"][0]
    assert all_head.macs == T * 32 * 80


# ----------------------------------------------------------------------------- formats
def test_matrix_bytes_formats():
    out, inp = 4096, 4096
    # 4-bit codes, groups of 128 along the input: fp16 scale + packed 4-bit zero per group
    b, bitmap = matrix_bytes(out, inp, 4, 128, sym=False)
    assert not bitmap
    assert b == out * inp / 2 + out * (2 * 32 + 16)
    assert matrix_bytes(out, inp, 4, 128, sym=True)[0] == out * inp / 2 + out * 64
    assert matrix_bytes(out, inp, 4, -1, sym=True)[0] == out * inp / 2 + out * 2
    assert matrix_bytes(out, inp, 4, 0, sym=True)[0] == out * inp / 2 + 2
    assert matrix_bytes(out, inp, 32)[0] == 4 * out * inp
    # 2:4 at 4 bits: kept half at 4 bits + 1 mask bit = 3 bits per weight
    b24, bitmap = matrix_bytes(out, inp, 4, 0, sym=True, sparsity=0.5)
    assert bitmap and b24 == pytest.approx(out * inp * 3 / 8 + 2)
    # 10% zeros do not pay for the mask: stays dense
    assert not matrix_bytes(out, inp, 4, 0, sym=True, sparsity=0.1)[1]
    # a 3-bit row of 5 codes takes ceil(15 / 8) = 2 bytes
    assert matrix_bytes(1, 5, 3, 0, sym=True)[0] == 2 + 2


@settings(max_examples=25, deadline=None)
@given(bits=st.sampled_from([2, 3, 4, 5, 6, 7, 8]), s1=st.floats(0, 0.95), s2=st.floats(0, 0.95),
       device=st.sampled_from(["jetson-nano", "jetson-nano-cpu", "this-machine", "siracusa"]))
def test_more_bits_or_fewer_zeros_never_cost_less(bits, s1, s2, device):
    config = tiny_llama()
    lo, hi = sorted((s1, s2))
    a = estimate(config, device, context=16, weight_bits=bits, sparsity=hi)
    b = estimate(config, device, context=16, weight_bits=bits, sparsity=lo)
    assert a["weight_bytes"] <= b["weight_bytes"] + 1e-9
    if bits < 8:
        c = estimate(config, device, context=16, weight_bits=bits + 1, sparsity=lo)
        assert c["weight_bytes"] > b["weight_bytes"]
        if device != "siracusa":                  # roofline: strictly more bytes, never faster
            assert c["latency_s_per_token"] >= b["latency_s_per_token"]


@settings(max_examples=15, deadline=None)
@given(c1=st.integers(1, 200), c2=st.integers(1, 200),
       device=st.sampled_from(sorted(DEVICES)))
def test_longer_context_never_decodes_faster(c1, c2, device):
    config = tiny_gpt2()
    lo, hi = sorted((c1, c2))
    a = estimate(config, device, context=lo, weight_bits=8)
    b = estimate(config, device, context=hi, weight_bits=8)
    assert b["latency_s_per_token"] >= a["latency_s_per_token"]
    assert b["kv_cache_bytes"] >= a["kv_cache_bytes"]


# ----------------------------------------------------------------------------- roofline
def test_roofline_kernel_time_is_the_slower_of_compute_and_memory():
    dev = Device("toy", "toy", "roofline", {
        "peak_ops": Fact(1e9, "op/s", "test"), "bandwidth": Fact(1e9, "B/s", "test"),
        "ops_per_element": Fact(5, "", "test"), "dequant_ops_per_weight": Fact(4, "", "test"),
        "sparse_ops_per_weight": Fact(2, "", "test"), "kernel_overhead_s": Fact(1e-6, "", "test")})
    memory_bound = Op("block 0", "up", "linear", macs=1000, n_weights=1000, weight_bytes=4000,
                      weight_bits=32, act_bytes=0)
    c = roofline_op(memory_bound, dev)
    assert c["seconds"] == pytest.approx(4000 / 1e9 + 1e-6)
    assert c["bottleneck"] == "memory bandwidth"
    compute_bound = Op("block 0", "up", "linear", macs=1000, n_weights=1000, weight_bytes=500,
                       weight_bits=4, bitmap_sparse=True)
    c = roofline_op(compute_bound, dev)                   # 2·1000 + 4·1000 + 2·1000 ops
    assert c["seconds"] == pytest.approx(8000 / 1e9 + 1e-6)
    assert c["bottleneck"] == "compute"


def test_jetson_fits_and_decode_is_bounded_by_bandwidth():
    llama = shared_config("llama-3.2-1b")
    fp32 = estimate(llama, "jetson-nano", context=256)
    q4 = estimate(llama, "jetson-nano", context=256, weight_bits=4)
    assert not fp32["fits"] and fp32["weight_bytes"] > 4.9e9
    assert q4["fits"] and q4["weight_bytes"] < 0.7e9
    # a decode step reads every stored weight except the unused embedding rows
    gpt2 = shared_config("gpt2-124m")
    r = estimate(gpt2, "jetson-nano", context=128)
    assert r["bottleneck"] == "memory bandwidth"
    read = r["weight_bytes"] - 4 * 1024 * 768                 # wpe rows are looked up
    assert r["latency_s_per_token"] >= read / 25.6e9
    assert r["latency_s_per_token"] < 1.2 * read / 25.6e9
    assert r["tokens_per_s"] == pytest.approx(1 / r["latency_s_per_token"])


# ----------------------------------------------------------------------------- siracusa
def test_siracusa_fit_verdicts():
    tiny = estimate(tiny_llama(), "siracusa", context=64, weight_bits=8)
    assert tiny["fits"] and all(c["fits"] for c in tiny["checks"])
    gpt2 = estimate(shared_config("gpt2-124m"), "siracusa", context=64, weight_bits=4,
                    sparsity=0.5)
    assert not gpt2["fits"] and gpt2["checks"][0]["ratio"] > 10
    assert any("L3" in c["memory"] and not c["fits"] for c in gpt2["checks"])
    assert "does NOT fit" in gpt2["verdict"]


def test_siracusa_weight_streaming_from_mram_then_l2_then_l3():
    """One wide block at 4 bit (3.4 MiB): MRAM-resident decode streams at 92 Gbit/s."""
    config = tiny_llama(vocab_size=256, hidden_size=768, num_hidden_layers=1,
                        num_attention_heads=12, num_key_value_heads=12, intermediate_size=2048,
                        tie_word_embeddings=True)
    S = get_device("siracusa")
    mram = estimate(config, S, context=32, weight_bits=4)
    assert mram["fits"] and mram["bottleneck"] == "MRAM weight bandwidth"
    streamed = sum(op["weight_bytes"] for op in mram["ops"] if op["kind"] == "linear")
    assert mram["latency_s_per_token"] >= streamed / S["mram_bandwidth"]
    looked_up = sum(op["weight_bytes"] for op in mram["ops"] if op["kind"] == "lookup")
    moved = sum(op["bytes_moved"]["MRAM"] for op in mram["ops"])
    assert moved == pytest.approx(streamed + looked_up)          # the tied table is in MRAM
    assert all(op["cycles"] == pytest.approx(op["seconds"] * S["clock_hz"]) for op in mram["ops"])
    l2 = estimate(config, S.replace(mram_bytes=0), context=32, weight_bits=4)
    l3 = estimate(config, S.replace(mram_bytes=0, l2_bytes=256 * 1024), context=32,
                  weight_bits=4)
    assert not l2["fits"] and l2["bottleneck"] == "L2-L1 DMA"
    assert l3["bottleneck"] == "off-chip L3 bandwidth"
    assert mram["latency_s_per_token"] < l2["latency_s_per_token"] < l3["latency_s_per_token"]
    assert {op.get("weights_at") for op in l3["ops"] if op["kind"] == "linear"} == {"l3"}


def test_siracusa_float_weights_run_on_the_cluster_with_float_activations():
    config = tiny_llama()
    r8 = estimate(config, "siracusa", context=16, weight_bits=8)
    r32 = estimate(config, "siracusa", context=16, weight_bits=32)
    assert r8["activation_bytes"] == 1 and r32["activation_bytes"] == 4
    assert r32["latency_s_per_token"] > r8["latency_s_per_token"]


# ----------------------------------------------------------------------------- devices
def test_every_device_number_names_its_source():
    for device in DEVICES.values():
        for key, fact in device.facts.items():
            assert isinstance(fact.value, (int, float)) and math.isfinite(fact.value), key
            assert len(fact.source) > 10, f"{device.name}.{key} has no source"
        table = device.table()
        assert all(key in table for key in device.facts)
    assert not DEVICES["siracusa"].facts["mram_bytes"].assumption
    assert DEVICES["siracusa"].facts["clock_hz"].assumption


def test_errors_are_minislm_errors():
    config = tiny_gpt2()
    with pytest.raises(ConfigError, match="unknown device"):
        estimate(config, "raspberry-pi")
    with pytest.raises(ConfigError, match="weight bits"):
        estimate(config, "siracusa", context=16, weight_bits=12)
    with pytest.raises(ConfigError, match="sparsity"):
        estimate(config, "siracusa", context=16, sparsity=1.0)
    with pytest.raises(InputError, match="max_position"):
        estimate(config, "jetson-nano", context=256)
    with pytest.raises(InputError, match="context"):
        estimate(config, "jetson-nano", context=0)
    with pytest.raises(ConfigError, match="no fact"):
        get_device("siracusa").replace(warp_drive=1)


# ----------------------------------------------------------------------------- CLI
def run_cli(argv):
    from minislm.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_cli_json_has_the_totals_and_layer_rows():
    path = data_file("configs/llama-3.2-1b.config.json")
    for device in ("siracusa", "jetson-nano"):
        code, text = run_cli(["cost", "--config", str(path), "--device", device, "--context",
                              "128", "--weight-bits", "4", "--sparsity", "0.5", "--json"])
        assert code == 0
        r = json.loads(text)
        for key in ("fits", "weight_bytes", "latency_s_per_token", "tokens_per_s", "bottleneck"):
            assert key in r
        assert len(r["layers"]) == 16 + 2 and r["layers"][1]["layer"] == "block 0"
        assert r["sparsity"] == 0.5 and r["weight_bits"] == 4
    code, text = run_cli(["cost", "--config", str(path), "--device", "siracusa"])
    assert code == 0 and "DOES NOT FIT" in text and "tokens/s" in text


def write_folder(folder: Path, config: dict, tensors: dict):
    from safetensors.numpy import save_file
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))


def test_cost_of_a_model_folder_measures_sparsity_and_reads_quantization_config(tmp_path):
    from minislm.commands import cost as cost_command
    from minislm.model.families import expected_shapes
    config = tiny_llama()
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        W = rng.standard_normal(shape).astype(np.float32)
        if W.ndim == 2 and "layers" in name:
            W[:, ::2] = 0.0                                        # half the weights pruned
        tensors[name] = W
    d = config.to_hf_dict()
    write_folder(tmp_path / "pruned", d, tensors)
    args = argparse.Namespace(model=str(tmp_path / "pruned"), config=None, device="jetson-nano",
                              context=32, weight_bits=None, embedding_bits=None, group_size=None,
                              sparsity=None, json=True, ops=False, show_device=False)
    out = io.StringIO()
    with redirect_stdout(out):
        assert cost_command.run(args) == 0
    r = json.loads(out.getvalue())
    assert r["sparsity"] == pytest.approx(0.5) and r["weight_bits"] == 32
    assert any("measured" in note for note in r["notes"])

    d["quantization_config"] = {"quant_method": "minislm", "bits": 3, "group_size": 16,
                                "sym": True, "lm_head": False}
    write_folder(tmp_path / "quant", d, tensors)
    args.model, args.sparsity = str(tmp_path / "quant"), 0.0
    out = io.StringIO()
    with redirect_stdout(out):
        cost_command.run(args)
    r = json.loads(out.getvalue())
    assert (r["weight_bits"], r["group_size"], r["embedding_bits"]) == (3, 16, 32)
    assert r["sparsity"] == 0.0

    args.model = str(tmp_path / "missing")
    with pytest.raises(MinislmError):
        cost_command.run(args)


def test_sparsity_survives_minislm_quantization(tmp_path):
    """Pruned then 4-bit quantized: the zeros are read back from the packed codes."""
    import minislm
    from minislm.hardware.folder import read_model_folder
    from minislm.model.families import expected_shapes
    from minislm.quant.model_quant import quantize_model
    config = tiny_gpt2()
    rng = np.random.default_rng(1)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        W = rng.standard_normal(shape).astype(np.float32) * 0.1
        if W.ndim == 2 and ".h." in f".{name}":
            W[::2, :] = 0.0                             # GPT-2 Conv1D (in, out): half the inputs
        tensors[name] = W
    write_folder(tmp_path / "pruned", config.to_hf_dict(), tensors)
    model = minislm.load(tmp_path / "pruned")
    quantized, _ = quantize_model(model, method="rtn", bits=4, group_size=16, progress=False)
    minislm.save(quantized, tmp_path / "q4")
    info = read_model_folder(tmp_path / "q4")
    assert (info["weight_bits"], info["group_size"], info["embedding_bits"]) == (4, 16, 32)
    assert 0.5 <= info["sparsity"] < 0.6                # pruned zeros + codes that hit q = z
    r = estimate(info["config"], "jetson-nano", context=16, weight_bits=4, group_size=16,
                 sparsity=info["sparsity"], embedding_bits=32)
    assert r["fits"] and r["weight_bytes_by_part"]["embeddings"] == 4 * (80 + 256) * 32


def test_cli_show_device_and_per_kernel_rows(tmp_path):
    code, text = run_cli(["cost", "--device", "siracusa", "--show-device"])
    assert code == 0 and "**assumption**" in text and "92 Gbit/s" in text
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_llama().to_hf_dict()))
    code, text = run_cli(["cost", "--config", str(path), "--device", "siracusa",
                          "--weight-bits", "8", "--ops"])
    assert code == 0 and "[N-EUREKA, weights in mram]" in text and "[cluster]" in text
    assert "FITS" in text
    code, text = run_cli(["cost", "--config", str(path), "--device", "siracusa",
                          "--context", "9999"])
    assert code == 2


# ----------------------------------------------------------------------------- assumptions
def test_engine_peak_and_utilisation_are_assumptions():
    """Issue 13 item 14: the paper's 1.95 TOp/s peak has no stated bit width, yet it is applied
    to 2-8-bit weights, and the utilisation divides an 8-bit end-to-end figure by it."""
    facts = DEVICES["siracusa"].facts
    assert facts["engine_peak_ops"].assumption and facts["engine_utilisation"].assumption
    assert "bit width" in facts["engine_peak_ops"].source


def test_verdicts_say_which_assumptions_they_rest_on():
    """Issue 13 item 14: the estimate names the assumed facts that move the fit, the decode and
    the prefill speed, and only those; a device of sourced facts rests on none."""
    S = get_device("siracusa")
    config = tiny_llama(hidden_size=256, intermediate_size=1024, num_attention_heads=4,
                        num_key_value_heads=4)
    r = estimate(config, S, context=128, weight_bits=4, assumptions=True)
    a = r["assumptions"]
    listed = set(a["fit"] + a["tokens_per_s"] + a["prefill_tokens_per_s"] + a["energy"])
    assert listed and all(S.facts[k].assumption for k in listed)
    assert a["fit"] == []                                  # memory sizes are sourced
    assert {"engine_peak_ops", "engine_utilisation"} <= set(a["prefill_tokens_per_s"])
    row = next(e for e in a["effects"] if e["fact"] == "engine_peak_ops")
    assert row["prefill_tokens_per_s_at"][0] < r["prefill_tokens_per_s"]   # a slower engine
    assert "assumptions" not in estimate(config, S, context=128, weight_bits=4)
    # a fit that an assumed reserve decides: it flips when the reserve doubles
    J = get_device("jetson-nano")
    need = estimate(config, J, context=128)["checks"][0]["need_bytes"]
    tight = J.replace(memory_bytes=J["reserved_bytes"] * 1.5 + need)
    tight = Device(tight.name, tight.title, tight.kind,
                   {**tight.facts, "reserved_bytes": J.facts["reserved_bytes"]})
    r = estimate(config, tight, context=128, assumptions=True)
    row = next(e for e in r["assumptions"]["effects"] if e["fact"] == "reserved_bytes")
    assert r["fits"] and row["fit"] and row["fits_at"] == [True, False]
    sourced = Device("toy", "toy", "roofline", {k: Fact(f.value, f.unit, "test")
                                                for k, f in J.facts.items()})
    a = estimate(config, sourced, context=128, assumptions=True)["assumptions"]
    assert a["effects"] == [] and a["fit"] == a["tokens_per_s"] == []


def test_cli_says_when_a_verdict_rests_on_an_assumption(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_llama().to_hf_dict()))
    code, text = run_cli(["cost", "--config", str(path), "--device", "jetson-nano"])
    assert code == 0
    assert "the fit verdict rests on assumptions: act_bytes" in text or \
        "the fit verdict rests on assumptions: reserved_bytes" in text
    assert "decode tokens/s rests on" in text and "kernel_overhead_s" in text
    code, text = run_cli(["cost", "--config", str(path), "--device", "siracusa", "--json"])
    a = json.loads(text)["assumptions"]
    assert a["fit"] == [] and "clock_hz" in a["tokens_per_s"]
