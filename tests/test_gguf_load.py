"""minislm.load of GGUF files against transformers' own GGUF loader, on tiny files.

The files are written with the reference writer (gguf.GGUFWriter) the way llama.cpp's
converter lays them out (q/k rows interleaved, GPT-2's Conv1D transposed, its tied head
stored twice), with tensors quantized by gguf.quants.quantize and K-quant blocks drawn at
random. transformers (`from_pretrained(dir, gguf_file=...)`) is the reference for names,
layouts, values, config, tokenizer ids and logits.
"""
import json
import types
from pathlib import Path

import numpy as np
import pytest

import minislm
from minislm.cli import main
from minislm.errors import CheckpointError, InputError, TokenizerError
from minislm.gguf import convert
from minislm.gguf.reader import read_gguf
from minislm.gguf.tokenizer import build_tokenizer, byte_alphabet
from conftest import build_hf_model, data_file

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
Q = gguf.GGMLQuantizationType

TEXTS = ["Hello world", " the cat sat on the mat", "in  two   spaces\n\n\ttab", "12345 + 0.5",
         "héllo 日本 🤖", "<|im_start|>user\nhi there<|im_end|>\n", "", "   "]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "o n", "a t", "Ġ s", "e r", "Ġ w", "Ġ c", "Ġs at",
          "Ġc at", "Ġ m", "Ġm at", "Ġ o", "Ġo n", "l l", "e ll", "h ell", "hell o"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_level_vocab():
    """(tokens, token types, merges): GPT-2's 256 byte symbols, a few merges, chat markers."""
    tokens = SPECIALS + list(byte_alphabet().values())
    tokens += ["".join(m.split()) for m in MERGES if "".join(m.split()) not in tokens]
    return tokens, [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)), MERGES


def sentencepiece_vocab():
    """(tokens, types, scores): <unk> <s> </s>, 256 byte tokens, pieces best-first."""
    pieces = ["▁", "▁t", "he", "▁the", "▁a", "in", "at", "▁c", "▁cat", "▁s", "▁sat", "on", "▁on",
              "▁m", "▁mat", "ll", "ell", "hell", "hello", "▁hello"] + list("abcdefghijklmnopqrstuvwxyz")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    kinds = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return tokens, kinds, scores


def gguf_name(arch, hf):
    """Inverse of convert.hf_name over the names the tiny models have."""
    top, block_prefix, block = convert.NAMES[arch]
    stem, _, suffix = hf.rpartition(".")
    for g, h in top.items():
        if h == stem:
            return f"{g}.{suffix}"
    i = stem.split(".")[2] if arch != "gpt2" else stem.split(".")[2]
    for g, h in block.items():
        if stem == f"{block_prefix.format(i)}{h}":
            return f"blk.{i}.{g}.{suffix}"
    raise KeyError(hf)


def random_k_blocks(rng, rows, cols, qtype):
    """Random K-quant bytes with a small, finite fp16 d (and dmin)."""
    size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (rows * cols // size, type_size), dtype=np.uint8)
    offsets = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,), Q.Q2_K: (80, 82), Q.Q3_K: (108,)}
    for off in offsets[qtype]:
        raw[:, off:off + 2] = np.frombuffer(np.float16(0.003).tobytes(), np.uint8)
    return raw.reshape(rows, -1)


def write_tiny_gguf(path, arch, hf_model, quant, tokenizer="gpt2", tied_copy=False, seed=0):
    """hf_model's weights as a GGUF file laid out like llama.cpp's converter writes it."""
    cfg = hf_model.config
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    if arch == "gpt2":
        w.add_block_count(cfg.n_layer)
        w.add_context_length(cfg.n_positions)
        w.add_embedding_length(cfg.n_embd)
        w.add_feed_forward_length(4 * cfg.n_embd)
        w.add_head_count(cfg.n_head)
        w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    else:
        w.add_block_count(cfg.num_hidden_layers)
        w.add_context_length(cfg.max_position_embeddings)
        w.add_embedding_length(cfg.hidden_size)
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_head_count(cfg.num_attention_heads)
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_vocab_size(cfg.vocab_size)
    if tokenizer == "gpt2":
        tokens, kinds, merges = byte_level_vocab()
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_merges(merges)
    else:
        tokens, kinds, scores = sentencepiece_vocab()
        w.add_tokenizer_model("llama")
        w.add_token_scores(scores)
    assert len(tokens) == cfg.vocab_size
    w.add_token_list(tokens)
    w.add_token_types(kinds)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{{ messages }}")
    for hf, tensor in hf_model.state_dict().items():
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        x = tensor.detach().numpy().astype(np.float32)
        name = gguf_name(arch, hf)
        if arch == "llama" and ".attn_q." in name:
            x = convert.rope_rows_to_pairs(x, cfg.num_attention_heads)
        elif arch == "llama" and ".attn_k." in name:
            x = convert.rope_rows_to_pairs(x, cfg.num_key_value_heads)
        elif arch == "gpt2" and x.ndim == 2 and name.startswith("blk."):
            x = np.ascontiguousarray(x.T)
        qtype = quant(name, x) if x.ndim == 2 else None
        if qtype is None:
            w.add_tensor(name, x)
        elif qtype in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
            w.add_tensor(name, random_k_blocks(rng, *x.shape, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
        if arch == "gpt2" and tied_copy and name == "token_embd.weight":   # llama.cpp's GPT-2
            w.add_tensor("output.weight", gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


LLAMA_TYPES = {"token_embd": Q.Q8_0, "attn_q": Q.Q4_1, "attn_k": Q.Q4_0, "attn_v": Q.Q5_0,
               "attn_output": Q.Q5_1, "ffn_gate": Q.Q4_K, "ffn_up": Q.Q5_K, "ffn_down": Q.Q6_K,
               "output": Q.Q8_0}


def llama_types(name, x):
    kind = name.split(".")[-2]
    qtype = LLAMA_TYPES.get(kind, Q.F16)
    if name.startswith("blk.1.") and kind in ("ffn_gate", "ffn_up", "ffn_down"):
        qtype = {"ffn_gate": Q.Q2_K, "ffn_up": Q.Q3_K, "ffn_down": Q.Q4_K}[kind]
    return qtype


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    V = len(byte_level_vocab()[0])
    llama = build_hf_model("llama", vocab_size=V, d_model=256, n_head=4, n_kv_head=2, d_ff=256,
                           rope_scaling=None, rope_theta=5000.0, max_position=128)
    gpt2 = build_hf_model("gpt2", vocab_size=V, d_model=64, n_head=4, max_position=1024)
    spm_v = len(sentencepiece_vocab()[0])
    spm = build_hf_model("llama", seed=1, vocab_size=spm_v, d_model=32, n_head=2, n_kv_head=1,
                         d_ff=64, rope_scaling=None, tied=True)
    for key in ("llama", "gpt2", "spm"):
        (root / key).mkdir()
    return {
        "llama": write_tiny_gguf(root / "llama" / "tiny-llama.gguf", "llama", llama, llama_types),
        "gpt2": write_tiny_gguf(root / "gpt2" / "tiny-gpt2.gguf", "gpt2", gpt2,
                                lambda n, x: Q.Q8_0 if "token_embd" in n else Q.Q4_1,
                                tied_copy=True),
        "spm": write_tiny_gguf(root / "spm" / "tiny-spm.gguf", "llama", spm,
                               lambda n, x: Q.Q8_0, tokenizer="llama"),
    }


@pytest.fixture(scope="module")
def references(tiny_files):
    """transformers' GGUF loader on each tiny file: (model, tokenizer)."""
    out = {}
    for key, path in tiny_files.items():
        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent,
                                                                  gguf_file=path.name).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        out[key] = model, tok
    return out


@pytest.mark.parametrize("key", ["llama", "gpt2", "spm"])
def test_params_equal_transformers_gguf_loader(tiny_files, references, key):
    model = minislm.load(tiny_files[key])
    ref = {k: v.numpy() for k, v in references[key][0].state_dict().items()}
    if model.config.tied:           # transformers keeps the head as a tied alias (or, for
        head = ref.pop("lm_head.weight")      # GPT-2's stored copy, a second equal tensor)
        emb = model.params[convert.hf_name(read_gguf(tiny_files[key]).architecture,
                                           "token_embd.weight")]
        np.testing.assert_array_equal(head, emb)
    assert sorted(model.params) == sorted(ref)
    for name, value in model.params.items():
        assert value.dtype == np.float32 and value.shape == ref[name].shape, name
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


@pytest.mark.parametrize("key", ["llama", "gpt2", "spm"])
def test_logits_and_greedy_equal_transformers(tiny_files, references, key):
    model = minislm.load(tiny_files[key])
    ref = references[key][0]
    ids = np.random.default_rng(3).integers(0, model.config.vocab_size, (2, 12))
    ours = minislm.forward(model, ids)
    with torch.no_grad():
        theirs = ref(torch.tensor(ids)).logits.numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * max(1.0, np.abs(theirs).max()))
    with torch.no_grad():
        greedy = ref.generate(torch.tensor(ids[:1]), max_new_tokens=6, do_sample=False,
                              pad_token_id=0).numpy()
    np.testing.assert_array_equal(minislm.generate(model, ids[:1], 6), greedy)


def test_config_fields_equal_transformers(tiny_files, references):
    for key, path in tiny_files.items():
        ours = convert.hf_config(read_gguf(path))
        theirs = references[key][0].config.to_dict()
        for field, value in ours.items():
            if field in ("architectures", "rope_theta", "n_inner", "n_positions") or \
                    (key, field) == ("gpt2", "tie_word_embeddings"):
                continue      # fields transformers leaves unset or renames; it unties GPT-2

            assert theirs.get(field) == value, (key, field, value, theirs.get(field))
    assert ours["tie_word_embeddings"] is True    # spm: no output.weight
    gpt2 = convert.hf_config(read_gguf(tiny_files["gpt2"]))
    assert gpt2["tie_word_embeddings"] is True    # the stored copy equals token_embd


@pytest.mark.parametrize("key", ["llama", "spm"])
def test_tokenizer_ids_equal_transformers(tiny_files, references, key):
    ours = minislm.load(tiny_files[key]).tokenizer
    theirs = references[key][1]
    texts = TEXTS + (["<s>hello</s> cat", "▁odd ▁spelling"] if key == "spm" else [])
    for text in texts:
        assert ours.encode(text).ids == theirs(text)["input_ids"], text
        ids = ours.encode(text).ids
        assert ours.decode(ids, skip_special_tokens=False) == \
            theirs.decode(ids, skip_special_tokens=False), text


def test_chat_markers_stay_whole(tiny_files):
    tok = minislm.load(tiny_files["llama"]).tokenizer
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>").ids
    assert ids[0] == 1 and ids[-1] == 2 and 1 not in ids[1:-1]


def test_save_writes_a_folder_transformers_loads_with_same_logits(tiny_files, references,
                                                                  tmp_path):
    model = minislm.load(tiny_files["llama"])
    out = minislm.save(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = np.arange(10)[None] % model.config.vocab_size
    with torch.no_grad():
        np.testing.assert_allclose(hf(torch.tensor(ids)).logits.numpy(),
                                   minislm.forward(model, ids), atol=1e-4)
    again = minislm.load(out)
    assert again.tokenizer.encode("hello the cat").ids == model.tokenizer.encode("hello the cat").ids


def test_cli_convert(tiny_files, tmp_path, capsys):
    src = tiny_files["gpt2"]
    before = src.read_bytes()
    assert main(["convert", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "gpt2" in capsys.readouterr().out
    folder = minislm.load(tmp_path / "out")
    model = minislm.load(src)
    for name, value in model.params.items():
        np.testing.assert_array_equal(folder.params[name], value)
    cfg = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == "{{ messages }}" and cfg["eos_token"] == "<|im_end|>"
    assert src.read_bytes() == before                          # the input is never modified
    assert main(["convert", str(src), "--out", str(src.parent)]) == 2        # into the input
    assert "input" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "x.bin"), "--out", str(tmp_path / "o2")]) == 2
    assert "expected a .gguf file" in capsys.readouterr().err


def _rewrite_arch(src, dst, arch):
    """The same file with general.architecture replaced (same length keeps offsets valid)."""
    raw = src.read_bytes()
    old = b"\x05\x00\x00\x00\x00\x00\x00\x00llama"
    assert raw.count(old) == 1 and len(arch) == 5
    dst.write_bytes(raw.replace(old, old[:8] + arch.encode()))
    return dst


def test_unsupported_architecture_and_missing_family(tiny_files, tmp_path):
    with pytest.raises(CheckpointError, match="architecture 'mamba' is not supported"):
        minislm.load(_rewrite_arch(tiny_files["llama"], tmp_path / "m.gguf", "mamba"))


@pytest.mark.parametrize("extra, pattern", [("rope_freqs", "rope_freqs"),
                                             ("linear", "RoPE scaling 'linear'")])
def test_rope_scaling_is_refused_not_ignored(tiny_files, tmp_path, extra, pattern):
    f = read_gguf(tiny_files["llama"])
    w = gguf.GGUFWriter(str(tmp_path / "r.gguf"), "llama")
    for key in ("llama.block_count", "llama.context_length", "llama.embedding_length",
                "llama.feed_forward_length", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.vocab_size"):
        w.add_uint32(key, int(f.metadata[key]))
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    if extra == "linear":
        w.add_string("llama.rope.scaling.type", "linear")
    w.add_tensor("rope_freqs.weight", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match=pattern):
        minislm.load(tmp_path / "r.gguf")


def test_unknown_pre_tokenizer_is_refused(tiny_files):
    meta = dict(read_gguf(tiny_files["llama"]).metadata)
    meta["tokenizer.ggml.pre"] = "qwen-something"
    with pytest.raises(TokenizerError, match="qwen-something"):
        build_tokenizer(meta)


@pytest.mark.parametrize("vocab", ["gpt-2", "llama-bpe"])
def test_llama_cpp_tokenizer_vectors(vocab):
    """llama.cpp's own test vectors (tests/test-tokenizer-0) on vocabulary-only files."""
    path = data_file(f"tokenizers/gguf-vocab/ggml-vocab-{vocab}.gguf")
    tok = build_tokenizer(read_gguf(path).metadata, str(path))
    texts = Path(f"{path}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    expected = Path(f"{path}.out").read_text(encoding="utf-8").split("\n")
    assert len(texts) == len(expected) > 40
    for text, ids in zip(texts, expected):
        assert tok.encode(text, add_special_tokens=False).ids == [int(i) for i in ids.split()], \
            text


def test_download_one_gguf_file(tiny_files, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    src = tiny_files["gpt2"]
    seen = {}

    class FakeApi:
        def model_info(self, repo_id, revision=None, files_metadata=False):
            return types.SimpleNamespace(sha="0123abcd", siblings=[
                types.SimpleNamespace(rfilename="tiny-gpt2.gguf", size=src.stat().st_size),
                types.SimpleNamespace(rfilename="other.Q8_0.gguf", size=5)])

    def fake_download(repo_id, filename, revision, local_dir):
        seen.update(filename=filename, revision=revision)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / filename).write_bytes(src.read_bytes())
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert main(["download", "someone/tiny-GGUF", "--file", "tiny-gpt2.gguf",
                 "--out-dir", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "someone--tiny-GGUF" / "tiny-gpt2.gguf"
    assert seen == {"filename": "tiny-gpt2.gguf", "revision": "0123abcd"}   # pinned commit
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny-gpt2.gguf"]
    assert minislm.load(path).config.family == "gpt2"
    assert main(["download", "someone/tiny-GGUF", "--file", "absent.gguf",
                 "--out-dir", str(tmp_path)]) == 2
    assert "other.Q8_0.gguf" in capsys.readouterr().err
    with pytest.raises(InputError, match="must name a .gguf file"):
        from minislm.gguf.download import download_gguf
        download_gguf("someone/tiny-GGUF", "../x.gguf", out_dir=tmp_path)
