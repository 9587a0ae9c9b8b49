"""Evaluation suite: perplexity protocol, three-tier QA matching, tool-call scoring,
multiple choice, model facts, the run log and `minislm eval`.

Models here are tiny random checkpoints written by minislm itself with a
byte-level BPE tokenizer trained in milliseconds on the tool-call generator's
texts, so no test needs torch or the shipped weights.
"""
from __future__ import annotations

import bz2
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minislm
from minislm.config import Config
from minislm.errors import ConfigError, InputError
from minislm.model import Model, families

from conftest import REPO, data_file


def train_tokenizer(texts, vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def tiny_model(folder, family: str = "gpt2", n_layer: int = 4, d_model: int = 32,
               d_ff: int = 64, seed: int = 0) -> Path:
    """A random tiny checkpoint with a real tokenizer, saved by minislm.save."""
    from minislm.data.tasks import task_texts
    tok = train_tokenizer(task_texts("toolcall")[:400])
    V = tok.get_vocab_size()
    if family == "gpt2":
        raw = {"model_type": "gpt2", "vocab_size": V, "n_embd": d_model, "n_layer": n_layer,
               "n_head": 4, "n_positions": 128, "n_inner": d_ff, "eos_token_id": 0,
               "bos_token_id": 0}
    else:
        raw = {"model_type": "llama", "vocab_size": V, "hidden_size": d_model,
               "num_hidden_layers": n_layer, "num_attention_heads": 4, "num_key_value_heads": 2,
               "intermediate_size": d_ff, "max_position_embeddings": 128, "eos_token_id": 0,
               "tie_word_embeddings": False}
    config = Config.from_hf_dict(raw)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in families.expected_shapes(config).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight", "norm.weight",
                          "layernorm.weight")):
            params[name] = np.ones(shape, np.float32)
        else:
            params[name] = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    model = Model(config=config, params=params, tokenizer=tok,
                  prefix=families.default_prefix(config))
    minislm.save(model, folder)
    return Path(folder)


@pytest.fixture(scope="module")
def gpt2_path(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("eval") / "gpt2")


@pytest.fixture(scope="module")
def gpt2(gpt2_path):
    return minislm.load(gpt2_path)


# ----------------------------------------------------------------------------- perplexity
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), T=st.integers(2, 12), data=st.data())
def test_windows_score_every_token_once(n, T, data):
    from minislm.evaluate.perplexity import windows
    S = data.draw(st.integers(1, T))
    spans = windows(n, T, S)
    scored = [i for b, e, first in spans for i in range(first, e)]
    assert sorted(scored) == scored and len(set(scored)) == len(scored)
    assert all(e - b <= T and b < first for b, e, first in spans)
    if S < T or T >= n:            # overlapping windows leave no token without context
        assert scored == list(range(1, n))
    else:                          # non-overlapping: the first token of each window is context
        assert scored == [i for i in range(1, n) if i % T]


def test_perplexity_matches_direct_sum(gpt2):
    """The windowed NLL equals the NLL computed by hand from the same windows."""
    from minislm.evaluate.perplexity import perplexity_of_ids, token_nll
    ids = np.random.default_rng(1).integers(0, gpt2.config.vocab_size, 50)
    res = perplexity_of_ids(gpt2, ids, seqlen=16, stride=8, batch_size=3, progress=False)
    manual, count = 0.0, 0
    for b, e, first in [(0, 16, 1), (8, 24, 16), (16, 32, 24), (24, 40, 32), (32, 48, 40),
                        (40, 50, 48)]:
        z = minislm.forward(gpt2, ids[None, b:e - 1])
        nll = token_nll(z, ids[None, b + 1:e])[0]
        manual += float(nll[first - b - 1:].sum())
        count += e - first
    assert res.tokens == count == 49
    assert res.perplexity == pytest.approx(math.exp(manual / count), rel=1e-5)
    assert res.windows == 6
    full = perplexity_of_ids(gpt2, ids, seqlen=50, progress=False)
    z = minislm.forward(gpt2, ids[None, :-1])
    assert full.nll == pytest.approx(float(token_nll(z, ids[None, 1:]).sum()), rel=1e-5)


def test_token_nll_dtype_and_value():
    from minislm.evaluate.perplexity import token_nll
    z = np.log(np.array([[[0.5, 0.25, 0.25]]], dtype=np.float32))
    nll = token_nll(z, np.array([[1]]))
    assert nll.dtype == np.float32 and nll[0, 0] == pytest.approx(math.log(4), rel=1e-6)


def test_perplexity_bad_inputs(gpt2):
    from minislm.evaluate.perplexity import perplexity, windows
    with pytest.raises(ConfigError, match="stride"):
        windows(10, 4, 5)
    with pytest.raises(ConfigError, match="max_position"):
        perplexity(gpt2, "hello world " * 20, seqlen=4096)
    with pytest.raises(InputError, match="empty"):
        perplexity(gpt2, "   ")


def test_perplexity_wikitext2_raw(gpt2):
    """WikiText-2 raw test reads and scores (a few hundred tokens on the tiny model)."""
    from minislm.evaluate.perplexity import perplexity
    text = data_file("wikitext-2-raw/wiki.test.txt").read_text(encoding="utf-8")
    res = perplexity(gpt2, text[:20000], seqlen=64, limit=400, progress=False)
    assert res.tokens == 400 - math.ceil(400 / 64) and math.isfinite(res.perplexity)


# ----------------------------------------------------------------------------- QA
@pytest.mark.parametrize("answer, aliases, tier", [
    ("Paris", ["paris"], "exact"),
    ("  PARIS!! ", ["Paris"], "exact"),
    ("It is Paris, France", ["Paris"], "substring"),
    ("Wolfgang Goethe wrote it", ["Johann Wolfgang von Goethe"], None),    # 2/4 words
    ("Goethe, Johann Wolfgang", ["Johann Wolfgang Goethe"], "fuzzy"),      # 3/3 words
    ("the jazz singer", ["The Jazz Singer (1927 film)"], None),
    ("Lyon", ["Paris", "Lutetia"], None),
    ("washington DC", ["Washington, D.C."], "exact"),
])
def test_match_tiers(answer, aliases, tier):
    from minislm.evaluate.qa import match_tier
    assert match_tier(answer, aliases) == tier


@pytest.mark.parametrize("answer, aliases, tier", [
    ("3.5 kilometres", ["35"], None),               # issue 13 item 8: characters, not words
    ("120", ["12"], None),
    ("1234", ["23"], None),
    ("about 3.5 kilometres", ["3.5"], "substring"),
    ("48 miles is about 77.2 kilometers.", ["77.2"], "substring"),
    ("It cost 1,000 dollars", ["1000"], "substring"),   # a thousands comma is dropped
    ("Between 1-2 hours", ["12"], None),
    ("It was the Eiffel Tower", ["Eiffel Tower"], "substring"),
    ("An apple", ["apple"], "exact"),                     # SQuAD drops articles
    ("Parisian food", ["Paris"], None),
])
def test_substring_tier_matches_whole_words(answer, aliases, tier):
    from minislm.evaluate.qa import match_tier
    assert match_tier(answer, aliases) == tier


def test_fuzzy_threshold_is_80_percent():
    from minislm.evaluate.qa import match_tier
    gold = "one two three four five"
    assert match_tier("five four three two zero", [gold]) == "fuzzy"        # 4/5 = 0.8
    assert match_tier("five four three zero zero", [gold]) is None          # 3/5


def test_load_triviaqa_shapes(tmp_path):
    from minislm.evaluate.qa import load_qa_jsonl
    rows = [{"question": "Q1?", "answer": {"value": "Paris", "aliases": ["Paris", "Lutetia"],
                                           "normalized_aliases": ["paris"]},
             "search_results": {"search_context": ["a long passage about Paris", "short"]}},
            {"question": "Q2?", "answer": "Rome"},
            {"question": "Q3?", "answers": ["x", "y"], "context": "ctx"}]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_qa_jsonl(path)
    assert items[0].answers == ("Paris", "Lutetia", "paris") and items[0].context == "short"
    assert items[1].context is None and items[2].answers == ("x", "y")
    path.write_text('{"question": "no answer"}\n')
    with pytest.raises(InputError, match=":1"):
        load_qa_jsonl(path)


def test_project_qa_set_is_consistent():
    from minislm.evaluate.qa import match_tier, project_qa_set
    items = project_qa_set()
    assert len(items) >= 10
    for it in items:                 # the context sentence always holds the short answer
        assert it.context and match_tier(it.context, it.answers) in ("exact", "substring")


def test_evaluate_qa_counts(gpt2):
    from minislm.evaluate.qa import QAItem, evaluate_qa
    items = [QAItem("What is the capital of France?", ("Paris",), "Paris is the capital.")] * 2
    res = evaluate_qa(gpt2, items, template="chat", max_new_tokens=4, progress=False)
    assert res["questions_closed"] == res["questions_open"] == 2
    assert 0.0 <= res["accuracy"] <= 1.0 and 0 < res["tokens"] <= 16
    assert res["accuracy"] == sum(res["tiers_closed"].values()) / 2


# ----------------------------------------------------------------------------- tool calls
def test_score_answer_dimensions():
    from minislm.evaluate.toolcall import score_answer
    expected = [{"name": "navigation", "arguments": {"destination": "Paris"}}]
    ok = '<tool_call>[{"name": "navigation", "arguments": {"destination": "paris "}}]</tool_call>'
    wrong_arg = ('<tool_call>[{"name": "navigation", "arguments": {"destination": "Rome"}}]'
                 '</tool_call>')
    wrong_tool = '<tool_call>[{"name": "make_call", "arguments": {"contact": "Paris"}}]</tool_call>'
    broken = '<tool_call>[{"name": "navigation", "arguments": {"destination": "Paris"}</tool_call>'
    assert score_answer(ok, expected) == {"tool": True, "syntax": True, "parameters": True,
                                          "correct": True}
    assert score_answer(wrong_arg, expected) == {"tool": True, "syntax": True,
                                                 "parameters": False, "correct": False}
    assert score_answer(wrong_tool, expected)["tool"] is False
    assert score_answer(broken, expected) == {"tool": False, "syntax": False,
                                              "parameters": False, "correct": False}
    assert score_answer("The capital of Peru is Lima.", None)["correct"] is True
    assert score_answer(ok, None) == {"tool": False, "syntax": False, "parameters": None,
                                      "correct": False}


def test_expected_responses_score_perfectly():
    """The generator's own responses are 100 % right on every dimension."""
    from minislm.evaluate.toolcall import heldout_examples, score_answer
    for ex in heldout_examples():
        assert score_answer(ex["response"], ex["tool_calls"])["correct"]


def test_evaluate_toolcall_runs(gpt2):
    from minislm.evaluate.toolcall import evaluate_toolcall, heldout_examples
    res = evaluate_toolcall(gpt2, heldout_examples(limit=3), max_new_tokens=4, progress=False)
    assert res["items"] == 3 and 0.0 <= res["accuracy"] <= res["syntax_accuracy"] + 1e-9


# ----------------------------------------------------------------------------- multiple choice
def test_choice_formats(tmp_path):
    from minislm.evaluate.choice import load_choice_file
    hs = tmp_path / "hs.txt.bz2"
    hs.write_bytes(bz2.compress("Roof: A man is on a roof. he\n3\na\nb\nc\nd\n".encode()))
    (item,) = load_choice_file(hs)
    assert item.gold == 3 and item.continuations == (" a", " b", " c", " d")
    wino = tmp_path / "w.jsonl"
    wino.write_text(json.dumps({"sentence": "Sarah beat Maria so _ won.", "option1": "Sarah",
                                "option2": "Maria", "answer": "1"}) + "\n")
    (item,) = load_choice_file(wino)
    assert item.contexts == ("Sarah beat Maria so Sarah", "Sarah beat Maria so Maria")
    assert item.continuations == (" won.", " won.") and item.gold == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("only\nfive\nlines\nin\nhere\n")
    with pytest.raises(InputError, match="6 lines"):
        load_choice_file(bad)


def test_continuation_logprob_is_sum_of_token_logprobs(gpt2):
    from minislm.evaluate.choice import continuation_logprob
    from minislm.evaluate.perplexity import token_nll
    ll, n = continuation_logprob(gpt2, "User: Call Mom.", " Assistant:")
    ids = np.array(gpt2.tokenizer.encode("User: Call Mom. Assistant:").ids)
    k = len(ids) - len(gpt2.tokenizer.encode("User: Call Mom.").ids)
    nll = token_nll(minislm.forward(gpt2, ids[None, :-1]), ids[None, 1:])[0]
    assert n == len(ids) and ll == pytest.approx(-float(nll[-k:].sum()), rel=1e-5)


def test_hellaswag_and_winogrande_files(gpt2):
    from minislm.evaluate.choice import evaluate_choice, load_choice_file
    hs = load_choice_file(data_file("hellaswag/hellaswag_val_full.txt.bz2"), limit=3)
    wg = load_choice_file(data_file("winogrande/dev.jsonl"), limit=3)
    assert len(hs) == 3 and hs[0].gold == 3 and len(wg) == 3
    res = evaluate_choice(gpt2, hs + wg, progress=False)
    assert res["items"] == 6 and 0 <= res["accuracy"] <= 1 and res["chance"] == pytest.approx(
        (3 * 0.25 + 3 * 0.5) / 6)


# ----------------------------------------------------------------------------- facts, log
def test_facts(gpt2, gpt2_path):
    from minislm.evaluate.facts import bytes_on_disk, count_params, model_facts
    counts = count_params(gpt2)
    assert counts["params"] == gpt2.num_params() and counts["params_nonzero"] <= counts["params"]
    assert bytes_on_disk(gpt2_path) == (gpt2_path / "model.safetensors").stat().st_size
    f = model_facts(gpt2, prompt_tokens=8, new_tokens=4, repeats=1)
    assert f["prefill_tok_s"] > 0 and f["decode_tok_s"] > 0 and f["peak_bytes"] > 0


def test_thread_scaling_child_process(gpt2_path):
    from minislm.evaluate.facts import thread_scaling
    res = thread_scaling(gpt2_path, threads=(1,), prompt_tokens=8, new_tokens=2)
    assert res[1]["decode_tok_s"] > 0


def test_runlog_appends(tmp_path):
    from minislm.evaluate.runlog import append_run, read_runs
    path = tmp_path / "runs.jsonl"
    append_run("eval", {"model": Path("x")}, {"perplexity": 3.0}, 1.5, path)
    append_run("compress", {}, {"stages": 2}, 2.0, path)
    runs = read_runs(path)
    assert [r["command"] for r in runs] == ["eval", "compress"]
    assert runs[0]["config"]["model"] == "x" and runs[0]["metrics"]["perplexity"] == 3.0
    assert {"git", "time", "wall_s", "argv"} <= set(runs[0])


# ----------------------------------------------------------------------------- CLI
def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "minislm", *args], capture_output=True,
                          text=True, cwd=REPO, env=env)


def test_eval_cli_json(gpt2_path, tmp_path):
    runs = tmp_path / "runs.jsonl"
    text = tmp_path / "t.txt"
    text.write_text("User: Call Mom.\nAssistant: ok\n" * 40)
    done = run_cli("eval", "--model", str(gpt2_path), "--task", "ppl", "--data", str(text),
                   "--seqlen", "32", "--stride", "16", "--limit", "200", "--json",
                   "--runs", str(runs))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tokens"] == 199 and out["perplexity"] > 1 and out["params"] > 0
    assert out["bytes"] > 0
    assert json.loads(runs.read_text().splitlines()[-1])["command"] == "eval"
    done = run_cli("eval", "--model", str(gpt2_path), "--task", "toolcall", "--limit", "2",
                   "--max-new-tokens", "3", "--json", "--no-log")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"accuracy", "tool_accuracy", "syntax_accuracy", "tokens", "params", "bytes"} <= set(out)
    done = run_cli("eval", "--model", str(gpt2_path), "--task", "facts", "--threads", "1",
                   "--seqlen", "8", "--max-new-tokens", "4", "--json", "--no-log")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["decode_tok_s"] > 0 and out["threads"]["1"]["decode_tok_s"] > 0


def test_eval_cli_errors(gpt2_path):
    done = run_cli("eval", "--model", str(gpt2_path), "--task", "mc", "--no-log")
    assert done.returncode == 2 and "--data" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("eval", "--model", str(gpt2_path), "--task", "ppl", "--limit", "0",
                   "--no-log")
    assert done.returncode == 2 and "limit" in done.stderr


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_perplexity_equals_hf_recipe(tmp_path, family):
    """Hugging Face's perplexity recipe (stride = max length) on the same checkpoint."""
    torch = pytest.importorskip("torch")
    from conftest import build_hf_model, save_hf_model
    from minislm.evaluate.perplexity import perplexity_of_ids
    hf = build_hf_model(family)
    ours = minislm.load(save_hf_model(hf, tmp_path / family))
    ids = np.random.default_rng(0).integers(0, 101, 150)
    T = 40
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    enc = torch.tensor(ids)[None]
    for begin in range(0, len(ids), T):                     # the recipe, verbatim in spirit
        end = min(begin + T, len(ids))
        trg_len = end - prev_end
        x = enc[:, begin:end]
        y = x.clone()
        y[:, :-trg_len] = -100
        with torch.no_grad():
            loss = hf(x, labels=y).loss
        valid = int((y != -100).sum()) - 1
        nll_sum += float(loss) * valid
        n_tokens += valid
        prev_end = end
        if end == len(ids):
            break
    res = perplexity_of_ids(ours, ids, seqlen=T, stride=T, progress=False)
    assert res.tokens == n_tokens
    assert res.perplexity == pytest.approx(math.exp(nll_sum / n_tokens), rel=1e-4)


def test_corpus_choice_set_is_deterministic_and_well_formed():
    from minislm.evaluate.choice import corpus_choice_set
    from minislm.data.tasks import toolcall_dataset
    docs = [ex["response"] + " " + " ".join(f"Word{i} is number {j} of this much longer sentence {3 * i + j}."
                                            for j in range(2))
            for i, ex in enumerate(toolcall_dataset()["test"])]
    a, b = corpus_choice_set(20, seed=3, documents=docs), corpus_choice_set(20, seed=3,
                                                                            documents=docs)
    assert a == b and len(a) == 20
    for it in a:
        assert len(set(it.continuations)) == 4 and 0 <= it.gold < 4
        words = len(it.contexts[0].split()) + len(it.continuations[it.gold].split())
        assert 8 <= words <= 30
    assert len({it.gold for it in a}) > 1


def test_blas_threads_sets_and_restores():
    from minislm.threads import _openblas_controls, auto_threads, blas_threads
    with blas_threads(None) as limited:
        assert limited is False
    controls = _openblas_controls()
    if controls is None:
        pytest.skip("no OpenBLAS thread control in this NumPy build")
    get, _ = controls
    before = get()
    with blas_threads(1) as limited:
        assert limited and get() == 1
    assert get() == before
    small = Model(config=None, params={"w": np.zeros((10, 10), np.float32)})
    assert auto_threads(small) == 1


def test_report_plots_are_written_whole(tmp_path):
    """plot() renders in memory and writes each PNG atomically (no temp file left behind)."""
    pytest.importorskip("matplotlib")
    from minislm.evaluate.report import plot
    rows = [{"label": f"m{i}", "metrics": {"bytes": 2 ** 20 * (i + 1),
                                           "perplexity": 100.0 / (i + 1)}} for i in range(3)]
    written = plot(rows, tmp_path)
    assert [p.name for p in written] == ["perplexity_vs_size.png", "stages.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
