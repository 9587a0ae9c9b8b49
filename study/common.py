"""Shared pieces of the study scripts: fixed evaluation data, one scorer for every engine.

Every metric is computed from a `logits(ids [1, T]) -> [T, V]` function, so minislm,
transformers and llama.cpp are scored by the same code on the same token ids (minislm's
tokenizer; its ids equal transformers' GGUF tokenizer: tests/test_gguf_real.py).
minislm's own library numbers (`perplexity_of_ids`, `evaluate_choice`) are computed
beside them as the check that the library agrees with this scorer.
Not part of the test suite. Data from ../shared/data ($MINISLM_DATA), never copied here.
"""
from __future__ import annotations

import bz2
import json
import math
import os
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MINISLM_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
REAL = Path(os.environ.get("MINISLM_REAL_MODELS",
                           Path.home() / ".cache" / "minislm" / "real-models"))
GGUF = {"smollm2": REAL / "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma3": REAL / "gemma-3-270m-q4_k_m.gguf"}
OUT = ROOT / "study" / "out"
T, S = 512, 256


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


class Clock:
    """Wall and CPU (user+sys of this process and its waited children) of a block."""
    def __enter__(self):
        self.w0 = time.perf_counter()
        r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.c0 = r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime
        self.load0 = load_avg()
        return self

    def __exit__(self, *exc):
        r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.wall = time.perf_counter() - self.w0
        self.cpu = r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime - self.c0
        self.load1 = load_avg()

    def as_dict(self):
        return {"wall_s": round(self.wall, 1), "cpu_s": round(self.cpu, 1),
                "load_start": self.load0, "load_end": self.load1}


# ---------------------------------------------------------------- data (fixed subsets)
def wikitext_ids(tokenizer, n_tokens: int) -> np.ndarray:
    from minislm.tokenizer import encode
    text = (DATA / "wikitext-2-raw" / "wiki.test.txt").read_text(encoding="utf-8")
    # HF protocol: "\n\n".join(test["text"]); the raw file is those lines already.
    # Tokenizing the whole file costs ~1 s; only the first n_tokens are kept.
    return np.array(encode(tokenizer, text[: n_tokens * 8])[:n_tokens], dtype=np.int64)


def lambada_items(n: int) -> list[tuple[str, str]]:
    """(context, " last word") of the first n LAMBADA test passages."""
    out = []
    with open(DATA / "lambada" / "lambada_test.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            ctx, word = text.rsplit(" ", 1)
            out.append((ctx, " " + word))
            if len(out) == n:
                break
    return out


def choice_items(task: str, n: int):
    from minislm.evaluate.choice import load_choice_file
    path = {"hellaswag": DATA / "hellaswag" / "hellaswag_val_full.txt.bz2",
            "winogrande": DATA / "winogrande" / "dev.jsonl"}[task]
    return load_choice_file(path, limit=n)


# ---------------------------------------------------------------- engines
def minislm_logits(model):
    from minislm.model.forward import forward
    return lambda ids: forward(model, np.asarray(ids, dtype=np.int64)[None, :])[0]


def torch_logits(hf_model):
    import torch

    def fn(ids):
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(ids, dtype=np.int64))[None, :]
            return hf_model(x).logits[0].float().numpy()
    return fn


def load_transformers(name: str):
    """transformers' own GGUF loader on the original file (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(int(os.environ.get("STUDY_THREADS", "1")))
    path = GGUF[name]
    m = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                             torch_dtype=torch.float32)
    return m.eval()


def llama_cpp_logits(path, n_ctx: int = 1024):
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, logits_all=True,
                n_threads=int(os.environ.get("STUDY_THREADS", "1")), verbose=False)

    def fn(ids):
        llm.reset()
        llm.eval([int(i) for i in ids])
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    return fn


# ---------------------------------------------------------------- metrics (one scorer)
def token_nll(logits, targets):
    """−log softmax(z)[y] per row in float64, 64 rows at a time (Gemma's 262k vocabulary)."""
    out = np.empty(len(targets), dtype=np.float64)
    for i in range(0, len(targets), 64):
        z = logits[i:i + 64].astype(np.float64)
        m = z.max(-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(-1)) + m[:, 0]
        out[i:i + 64] = lse - z[np.arange(len(z)), targets[i:i + 64]]
    return out


def strided_ppl(logits_fn, ids, seqlen=T, stride=S) -> dict:
    """HF's strided protocol: windows of T tokens every S, each scoring only the new tokens."""
    from minislm.evaluate.perplexity import windows
    nll, n = 0.0, 0
    spans = windows(len(ids), seqlen, stride)
    for b, e, first in spans:
        x = ids[b:e]
        lp = token_nll(logits_fn(x[:-1]), x[1:])
        scored = lp[first - b - 1:]
        nll += float(scored.sum())
        n += scored.size
    return {"ppl": math.exp(nll / n), "tokens": n, "windows": len(spans)}


def lambada_acc(logits_fn, tokenizer, items) -> dict:
    """Last-word accuracy: every token of the last word is the argmax under teacher forcing."""
    from minislm.tokenizer import encode
    hits = 0
    for ctx, word in items:
        c = encode(tokenizer, ctx)
        whole = encode(tokenizer, ctx + word)        # the word tokenized in place, as
        w = whole[len(c):] if whole[:len(c)] == c and len(whole) > len(c) \
            else encode(tokenizer, word)             # evaluate_choice does
        ids = np.array(c + w, dtype=np.int64)
        pred = logits_fn(ids[:-1])[len(c) - 1:].argmax(-1)
        hits += int(np.array_equal(pred, ids[len(c):]))
    return {"acc": hits / len(items), "items": len(items)}


def choice_acc(logits_fn, tokenizer, items) -> dict:
    """Same rule as minislm.evaluate.choice: argmax of Σ log p(continuation | context)."""
    from minislm.tokenizer import encode
    correct = correct_norm = 0
    for it in items:
        ll = []
        for ctx, cont in zip(it.contexts, it.continuations):
            c = encode(tokenizer, ctx)
            whole = encode(tokenizer, ctx + cont)
            y = whole[len(c):] if whole[:len(c)] == c and len(whole) > len(c) else encode(tokenizer, cont)
            ids = np.array(c + y, dtype=np.int64)
            lp = token_nll(logits_fn(ids[:-1]), ids[1:])
            ll.append(-lp[-len(y):].sum())
        ll = np.array(ll)
        nb = np.array([max(len(y.encode("utf-8")), 1) for y in it.continuations])
        correct += int(np.argmax(ll) == it.gold)
        correct_norm += int(np.argmax(ll / nb) == it.gold)
    return {"acc": correct / len(items), "acc_norm": correct_norm / len(items), "items": len(items)}


def folder_facts(path) -> dict:
    """#params, #nonzero and bytes on disk of a saved model folder (minislm's own counters)."""
    import minislm
    from minislm.evaluate.facts import bytes_on_disk, count_params
    m = minislm.load(str(path))
    return {**count_params(m), "bytes": bytes_on_disk(path)}


def cost_verdict(path, device) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(["python", "-m", "minislm.cli", "cost", "--model", str(path),
                        "--device", device, "--json"], capture_output=True, text=True, env=env)
    if r.returncode:
        return {"error": r.stderr.strip()[-200:]}
    return json.loads(r.stdout)


def append_jsonl(path, row):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
