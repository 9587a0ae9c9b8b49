"""Real pretrained GGUF files (SmolLM2-135M-Instruct Q4_1, Gemma-3-270M Q4_K_M) against
transformers' GGUF loader, transformers' GGUF tokenizer and llama.cpp.

The files come from ../shared/fetch-real-models into $MINISLM_REAL_MODELS (default
~/.cache/minislm/real-models); every test skips with the reason when they are absent.
transformers' loader is called once per file (module fixtures): its GGUF metadata parsing
dominates the runtime, so the reference model is assembled from one
`load_gguf_checkpoint` call (config + dequantized tensors) rather than two.
"""
import os
from pathlib import Path

import numpy as np
import pytest

import minislm
from minislm.gguf import convert
from minislm.gguf.reader import read_gguf
from minislm.gguf.tokenizer import build_tokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

REAL = Path(os.environ.get("MINISLM_REAL_MODELS",
                           Path.home() / ".cache" / "minislm" / "real-models"))
SMOL, GEMMA = "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"
TEXTS = ["The capital of France is", "  leading and trailing  ", "a  b   c    d\n\n\n\t\t end",
         "héllo wörld — 日本語のテキスト, Ελληνικά, Русский, العربية 🤖🦙",
         "def f(x):\n    return x ** 2  # square\n\tif x != 0: pass",
         "12345 3.14159 1,000,000 -42 0x1F 2024-11-29", "x\u00a0y\u200bz ﬁ ß",
         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
         "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", ""]
PROMPT = "The capital of France is"


def real_file(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} not present (run ../shared/fetch-real-models, or set "
                    "MINISLM_REAL_MODELS)")
    return path


def transformers_reference(path: Path):
    """(config dict, {name: float32 array}, torch model) from transformers' GGUF loader."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    ours = convert.hf_config(read_gguf(path))          # only picks the model class to map names
    with torch.device("meta"):
        skeleton = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**ours))
    parsed = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)
    config = parsed["config"]
    tensors = {k: v.numpy() for k, v in parsed["tensors"].items()}
    from transformers.initialization import no_init_weights
    with no_init_weights():                 # every weight is assigned from the file below
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**config))
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False, assign=True)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    return config, tensors, model.eval()


@pytest.fixture(scope="module")
def smol():
    path = real_file(SMOL)
    config, tensors, model = transformers_reference(path)
    return path, config, tensors, model


@pytest.fixture(scope="module")
def gemma():
    path = real_file(GEMMA)
    config, tensors, model = transformers_reference(path)
    return path, config, tensors, model


@pytest.fixture(scope="module")
def smol_model(smol):
    return minislm.load(smol[0])


@pytest.fixture(scope="module")
def gemma_model():
    return minislm.load(real_file(GEMMA))


def _same_tensors(ours: dict, theirs: dict):
    theirs = dict(theirs)
    theirs.pop("lm_head.weight", None)                 # tied: transformers' alias of the embedding
    assert sorted(ours) == sorted(theirs)
    for name, value in ours.items():
        assert value.dtype == np.float32 and value.shape == theirs[name].shape, name
        np.testing.assert_array_equal(value, theirs[name], err_msg=name)


def test_smol_every_tensor_equals_transformers(smol, smol_model):
    _, config, tensors, _ = smol
    assert smol_model.config.family == "llama" and smol_model.config.tied
    _same_tensors(smol_model.params, tensors)


def test_gemma_every_tensor_equals_transformers(gemma):
    """Q4_K, Q6_K, Q5_0, Q8_0 and F32 tensors, norms with the +1 undone (no family needed)."""
    path, config, tensors, _ = gemma
    f = read_gguf(path)
    assert {t.type_name for t in f.tensors.values()} >= {"Q4_K", "Q6_K", "Q5_0", "Q8_0"}
    _same_tensors(convert.hf_params(f, convert.hf_config(f)), tensors)


@pytest.mark.parametrize("which", ["smol", "gemma"])
def test_config_equals_transformers(which, request):
    path, config, _, model = request.getfixturevalue(which)
    ours = convert.hf_config(read_gguf(path))
    theirs = model.config.to_dict()
    for field, value in ours.items():
        if field in ("architectures", "rope_theta"):
            continue                                  # not set by transformers' GGUF loader
        assert theirs.get(field) == value, (field, value, theirs.get(field))


@pytest.mark.parametrize("name", [SMOL, GEMMA])
def test_tokenizer_ids_equal_transformers(name):
    path = real_file(name)
    ours = build_tokenizer(read_gguf(path).metadata, str(path))
    theirs = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in TEXTS:
        ids = ours.encode(text).ids
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids), text


def _same_logits_and_greedy(ours, reference, ids, new_tokens):
    """Logits within 1e-4 of the largest one (float32) and identical greedy continuations."""
    with torch.no_grad():
        theirs = reference(torch.tensor(ids)).logits.numpy()
        greedy = reference.generate(torch.tensor(ids), max_new_tokens=new_tokens,
                                    do_sample=False).numpy()
    logits = minislm.forward(ours, ids)
    assert logits.dtype == np.float32
    assert float(np.abs(logits - theirs).max()) <= 1e-4 * float(np.abs(theirs).max())
    np.testing.assert_array_equal(minislm.generate(ours, ids, new_tokens), greedy)


def test_smol_logits_and_greedy_equal_transformers(smol, smol_model):
    chat = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"
    _same_logits_and_greedy(smol_model, smol[3], np.array([smol_model.tokenizer.encode(chat).ids]),
                            12)
    prompt = np.array([smol_model.tokenizer.encode(PROMPT).ids])
    answer = minislm.generate(smol_model, prompt, 3)[0, prompt.shape[1]:]
    assert smol_model.tokenizer.decode(list(answer)).startswith(" Paris.")


def test_gemma_logits_and_greedy_equal_transformers(gemma, gemma_model):
    assert gemma_model.config.family == "gemma3"
    ids = np.array([gemma_model.tokenizer.encode(PROMPT).ids])
    _same_logits_and_greedy(gemma_model, gemma[3], ids, 8)
    answer = minislm.generate(gemma_model, ids, 8)[0, ids.shape[1]:]
    assert gemma_model.tokenizer.decode(list(answer)).startswith(" the capital of the country")


@pytest.mark.parametrize("name, loaded", [(SMOL, "smol_model"), (GEMMA, "gemma_model")])
def test_top1_agreement_with_llama_cpp(name, loaded, request, capsys):
    """llama.cpp computes in its own (quantized-activation) kernels: report the top-1
    agreement of next-token predictions, require it to be high."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path = real_file(name)
    ours = request.getfixturevalue(loaded)
    text = ("<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>"
            "assistant\nThe sea is vast, deep and full of life, from tiny plankton to whales.")
    ids = ours.tokenizer.encode(text).ids
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False,
                          n_threads=1)
    assert llm.tokenize(text.encode(), add_bos=ids[0] == ours.config.bos_token_id,
                        special=True) == ids
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)])
    mine = minislm.forward(ours, np.array([ids]))[0]
    agree = float((theirs.argmax(-1) == mine.argmax(-1)).mean())
    with capsys.disabled():
        print(f"\n{name}: top-1 agreement with llama.cpp {agree:.3f} over {len(ids)} positions, "
              f"max |Δlogit| {np.abs(theirs - mine).max():.3f} (largest logit "
              f"{np.abs(mine).max():.1f})")
    assert agree >= 0.9
