"""GGUF export of Gemma 3 (llama.cpp's `gemma3` architecture): the file reads back into the same
model, and llama.cpp (llama-cpp-python) computes the same logits, sliding windows included."""
import numpy as np
import pytest

import minislm
from minislm.errors import InputError
from minislm.quant.gguf_blocks import dequantize_blocks, quantize_blocks
from minislm.quant.gguf_export import export_gguf

from conftest import build_hf_model, save_hf_model

gguf = pytest.importorskip("gguf")
# not llama.cpp's default pattern (every 6th block global) nor its local RoPE base (10000):
# the file must say which blocks slide and with which base
LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]
KW = dict(n_layer=4, n_head=4, n_kv_head=1, head_dim=16, d_model=64, d_ff=64, vocab_size=320,
          sliding_window=4, layer_types=LAYER_TYPES, query_pre_attn_scalar=16,
          rope_local_theta=100.0, rope_theta=1e6)
IDS = [5, 17, 200, 33, 8, 91, 150, 2, 77, 12, 300]           # 11 tokens > the window of 4


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def gemma(request, tmp_path_factory):
    hf = build_hf_model("gemma3", seed=3, tied=request.param, **KW)
    return minislm.load(save_hf_model(hf, tmp_path_factory.mktemp("gemma") / "hf"))


def _norm(name):
    return name.endswith("norm.weight")


def test_gguf_names_and_metadata(gemma, tmp_path):
    path, _ = export_gguf(gemma, tmp_path / "g.gguf", "q8_0")
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "gemma3"
    value = lambda key: fields[key].parts[-1][0]              # noqa: E731
    assert value("gemma3.attention.key_length") == 16
    assert value("gemma3.attention.head_count_kv") == 1
    assert value("gemma3.attention.sliding_window") == 4
    assert value("gemma3.rope.freq_base_swa") == 100.0
    assert [bool(fields["gemma3.attention.sliding_window_pattern"].parts[i][0])
            for i in fields["gemma3.attention.sliding_window_pattern"].data] == \
        [t == "sliding_attention" for t in LAYER_TYPES]
    tensors = {t.name: t for t in reader.tensors}
    assert ("output.weight" in tensors) == (not gemma.config.tied)
    assert tensors["blk.0.post_ffw_norm.weight"].tensor_type.name == "F32"
    assert tensors["blk.3.ffn_down.weight"].tensor_type.name == "Q8_0"
    # norms are stored as 1 + w (llama.cpp's converter's convention; the reader subtracts it)
    np.testing.assert_array_equal(
        np.asarray(tensors["blk.2.attn_q_norm.weight"].data),
        gemma.params["model.layers.2.self_attn.q_norm.weight"] + np.float32(1))


@pytest.mark.parametrize("qtype", ["f32", "q8_0"])
def test_read_back_equals_original(gemma, qtype, tmp_path):
    path, _ = export_gguf(gemma, tmp_path / "g.gguf", qtype)
    back = minislm.load(path)
    cfg, orig = back.config, gemma.config
    assert cfg.family == "gemma3" and cfg.tied == orig.tied
    assert list(cfg.layer_types) == LAYER_TYPES and cfg.sliding_window == 4
    assert (cfg.rope_local_theta, cfg.rope_theta, cfg.query_pre_attn_scalar) == (100.0, 1e6, 16)
    assert set(back.params) == set(gemma.params)
    for name, w in gemma.params.items():
        got = back.params[name]
        assert got.dtype == np.float32 and got.shape == w.shape, name
        if _norm(name):        # stored as 1 + w in float32: w back up to that rounding
            np.testing.assert_array_equal(got, (w + np.float32(1)) - np.float32(1), name)
            np.testing.assert_allclose(got, w, atol=1e-7, rtol=0)
        elif qtype == "f32":
            np.testing.assert_array_equal(got, w, name)
        else:
            np.testing.assert_array_equal(got, dequantize_blocks(quantize_blocks(w, qtype), qtype))
    if qtype == "f32":
        np.testing.assert_allclose(minislm.forward(back, np.array([IDS])),
                                   minislm.forward(gemma, np.array([IDS])), atol=1e-5, rtol=0)


@pytest.mark.parametrize("qtype", ["f32", "q8_0"])
def test_llama_cpp_runs_exported_gemma(gemma, qtype, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    path, _ = export_gguf(gemma, tmp_path / "g.gguf", qtype)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=1, type_k=0, type_v=0)    # GGML_TYPE_F32 KV cache
    llm.eval(IDS)                                             # token ids: no vocabulary needed
    theirs = np.asarray(llm.scores[:len(IDS)])
    ref = gemma if qtype == "f32" else minislm.load(path)    # q8_0: the weights llama.cpp holds
    ours = minislm.forward(ref, np.array([IDS]))[0]
    # the tolerances test_gguf_export.py uses for llama (what remains in f32 is ggml's GELU,
    # computed from an f16 table)
    tol = {"f32": 1e-3, "q8_0": 0.03}[qtype]
    assert np.abs(theirs - ours).max() <= tol * np.abs(ours).max()


def test_gemma_without_sliding_layers_round_trips(tmp_path):
    """No sliding block: no window keys in the file, and the reader makes every block global
    (it used to require gemma3.attention.sliding_window)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    hf = build_hf_model("gemma3", seed=1, **dict(KW, layer_types=["full_attention"] * 4))
    model = minislm.load(save_hf_model(hf, tmp_path / "hf"))
    path, _ = export_gguf(model, tmp_path / "g.gguf", "f32")
    assert "gemma3.attention.sliding_window" not in gguf.GGUFReader(str(path)).fields
    back = minislm.load(path)
    assert list(back.config.layer_types) == ["full_attention"] * 4
    ours = minislm.forward(model, np.array([IDS]))[0]
    np.testing.assert_allclose(minislm.forward(back, np.array([IDS]))[0], ours, atol=1e-5,
                               rtol=0)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=1, type_k=0, type_v=0)
    llm.eval(IDS)
    assert np.abs(np.asarray(llm.scores[:len(IDS)]) - ours).max() <= 1e-3 * np.abs(ours).max()


def test_llama_cpp_attention_scale_refused(tmp_path):
    """llama.cpp's gemma3 scales q kᵀ by 1/√head_dim: another query_pre_attn_scalar is refused
    (the file would run with different logits)."""
    hf = build_hf_model("gemma3", seed=0, **dict(KW, query_pre_attn_scalar=24))
    model = minislm.load(save_hf_model(hf, tmp_path / "hf"))
    with pytest.raises(InputError, match="query_pre_attn_scalar"):
        export_gguf(model, tmp_path / "g.gguf", "f32")
    assert not (tmp_path / "g.gguf").exists()


def test_gemma2_still_refused(tmp_path):
    hf = build_hf_model("gemma2", seed=0, n_layer=2, d_model=32, head_dim=16, vocab_size=64)
    model = minislm.load(save_hf_model(hf, tmp_path / "hf"))
    with pytest.raises(InputError, match="gemma2"):
        export_gguf(model, tmp_path / "g.gguf", "f32")


TEXT = "the quick brown fox jumps over the lazy dog; then the three thin thieves"


def _gemma_tokenizer(vocab_size):
    """A Gemma-style SentencePiece vocabulary (<pad> <eos> <bos> <unk>, 256 byte tokens, then
    pieces best-first) built by minislm's GGUF tokenizer builder, as a Gemma GGUF loads."""
    from minislm.gguf.tokenizer import build_tokenizer
    chars = sorted(set(TEXT.replace(" ", "▁")))
    # "ve" ranks above "ev": "eve" is e + ve only if the merge order is kept (llama.cpp
    # orders merges by score)
    short = ["ve", "ev", "th", "the", "▁t", "▁th", "▁the", "er", "ie", "▁▁"]
    words = sorted({"▁" + w for w in TEXT.split()}, key=lambda w: (len(w), w))
    pieces = list(dict.fromkeys(["▁"] + chars + short + words))
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)] + pieces
    tokens += [f"<unused{i}>" for i in range(vocab_size - len(tokens))]
    types = [3, 3, 3, 2] + [6] * 256 + [1] * len(pieces) + [4] * (vocab_size - 260 - len(pieces))
    meta = {"general.architecture": "gemma3", "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.scores": [0.0] * vocab_size, "tokenizer.ggml.bos_token_id": 2,
            "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.unknown_token_id": 3,
            "tokenizer.ggml.padding_token_id": 0, "tokenizer.ggml.add_bos_token": True,
            "tokenizer.ggml.add_space_prefix": False}
    return build_tokenizer(meta)


def test_sentencepiece_tokenizer_exported_for_llama_cpp(gemma, tmp_path):
    """Gemma's vocabulary goes out as tokenizer.ggml.model = llama (tokens, scores, types):
    minislm reads back the same tokenizer and llama.cpp tokenizes text to the same ids."""
    llama_cpp = pytest.importorskip("llama_cpp")
    tok = _gemma_tokenizer(gemma.config.vocab_size)
    model = gemma.replace(tokenizer=tok)
    path, _ = export_gguf(model, tmp_path / "g.gguf", "f32")
    fields = gguf.GGUFReader(str(path)).fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    back = minislm.load(path).tokenizer
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False, n_threads=1,
                          type_k=0, type_v=0)
    assert tok.encode("eve").ids[1:] == [tok.token_to_id("e"), tok.token_to_id("ve")]
    for text in [TEXT, "the  thin  fox", "héllo wörld 42 ✓", "  lazy\nthieves\t", "eve"]:
        ids = tok.encode(text).ids
        assert ids[0] == 2 and len(ids) > 2                   # BOS, then the pieces
        assert back.encode(text).ids == ids, text
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == ids, text
    assert llm.detokenize(tok.encode(TEXT).ids[1:]).decode() == TEXT
