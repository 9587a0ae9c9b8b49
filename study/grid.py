"""The LLaMA thesis' grid (Tables A.1/A.2 shape) on SmolLM2-135M, one cell per command line.

    cd <repo> && PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1 python study/grid.py --cells rtn4,gptq4

Each cell runs minislm's own CLI (prune / quantize / finetune) on the HF folder converted
from the GGUF file (`minislm convert`, study/out/smollm2), then scores the result with the
library: WikiText-2 test perplexity on the first --ppl-tokens tokens (HF strided protocol,
T=512, S=256, the same windows as study/baselines.py), LAMBADA last-word accuracy on the
first --lambada passages, #params / #nonzero / bytes on disk, and `minislm cost`'s verdict
on Siracusa and the Jetson Nano. Calibration: WikiText-2 *validation* text (held out from
the test windows): pruning 16 windows x 256 tokens, GPTQ 16 x 512. One JSON line per cell to
study/out/grid.jsonl; a cell already there is skipped (delete the line to redo it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

BASE = C.OUT / "smollm2"
CAL = str(C.DATA / "wikitext-2" / "valid.txt")
PCAL = ["--calib", CAL, "--calib-samples", "16", "--calib-seqlen", "256"]
QCAL = ["--calib", CAL, "--n-samples", "16", "--seq-len", "512"]


def q(name, *args):
    return [["quantize", "--model", "{src}", "--out", "{dst}", *args]]


def p(*args):
    return [["prune", "--model", "{src}", "--out", "{dst}", *args]]


# cell -> (source cell or None for the base, [minislm sub-commands])
CELLS = {
    "base": (None, []),
    "rtn8_tensor": (None, q("", "--method", "rtn", "--bits", "8", "--group-size", "0", "--sym")),
    "rtn8_channel": (None, q("", "--method", "rtn", "--bits", "8", "--group-size", "-1", "--sym")),
    "rtn8_g128": (None, q("", "--method", "rtn", "--bits", "8", "--group-size", "128", "--sym")),
    "rtn4_g128": (None, q("", "--method", "rtn", "--bits", "4", "--group-size", "128")),
    "rtn3_g128": (None, q("", "--method", "rtn", "--bits", "3", "--group-size", "128")),
    "gptq4_g128": (None, q("", "--method", "gptq", "--bits", "4", "--group-size", "128", *QCAL)),
    "gptq3_g128": (None, q("", "--method", "gptq", "--bits", "3", "--group-size", "128", *QCAL)),
    "gptq4_g128_eora16": (None, q("", "--method", "gptq", "--bits", "4", "--group-size", "128",
                                  "--eora-rank", "16", *QCAL)),
    "gptq4_g128_eora64": (None, q("", "--method", "gptq", "--bits", "4", "--group-size", "128",
                                  "--eora-rank", "64", *QCAL)),
    "wanda_2:4": (None, p("--method", "wanda", "--nm", "2:4", *PCAL)),
    "wanda_4:8": (None, p("--method", "wanda", "--nm", "4:8", *PCAL)),
    "wanda_1:8": (None, p("--method", "wanda", "--nm", "1:8", *PCAL)),
    "wanda_50%": (None, p("--method", "wanda", "--sparsity", "0.5", *PCAL)),
    "sparsegpt_50%": (None, p("--method", "sparsegpt", "--sparsity", "0.5", *PCAL)),
    "sparsegpt_2:4": (None, p("--method", "sparsegpt", "--nm", "2:4", *PCAL)),
    "depth_2": (None, p("--method", "depth", "--importance", "block", "--remove-layers", "2", *PCAL)),
    "depth_4": (None, p("--method", "depth", "--importance", "block", "--remove-layers", "4", *PCAL)),
    "depth_8": (None, p("--method", "depth", "--importance", "block", "--remove-layers", "8", *PCAL)),
}


def run_cli(args, log):
    env = dict(os.environ, PYTHONPATH=str(C.ROOT))
    cmd = ["python", "-m", "minislm.cli", *args]
    log.append(" ".join(["minislm", *args]))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr[-2000:]}")


def cost_summary(path):
    out = {}
    for dev in ("siracusa", "jetson-nano"):
        c = C.cost_verdict(path, dev)
        out[dev] = ({"fits": c.get("fits"), "tok_s": round(c.get("tokens_per_s", 0), 2),
                     "bottleneck": c.get("bottleneck")} if "error" not in c else c)
    return out


def score(path, ppl_tokens, n_lambada):
    import minislm
    from minislm.evaluate.facts import bytes_on_disk, count_params
    from minislm.evaluate.perplexity import perplexity_of_ids
    m = minislm.load(str(path))
    ids = C.wikitext_ids(m.tokenizer, ppl_tokens)
    with C.Clock() as ck:
        ppl = perplexity_of_ids(m, ids, C.T, C.S, progress=False)
        lam = C.lambada_acc(C.minislm_logits(m), m.tokenizer, C.lambada_items(n_lambada))
    return {"ppl": ppl.perplexity, "ppl_tokens": ppl.tokens, "lambada": lam["acc"],
            "lambada_items": lam["items"], **count_params(m), "bytes": bytes_on_disk(path),
            "eval": ck.as_dict()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", required=True, help="comma-separated names from CELLS")
    ap.add_argument("--ppl-tokens", type=int, default=4096)
    ap.add_argument("--lambada", type=int, default=30)
    ap.add_argument("--out", default=str(C.OUT / "grid.jsonl"))
    a = ap.parse_args(argv)
    done = set()
    if Path(a.out).exists():
        done = {json.loads(line)["cell"] for line in open(a.out)}
    for cell in a.cells.split(","):
        if cell in done:
            print(f"{cell}: done already", flush=True)
            continue
        src_cell, cmds = CELLS[cell]
        src = BASE if src_cell is None else C.OUT / "grid" / src_cell
        dst = BASE if not cmds else C.OUT / "grid" / cell
        log = []
        with C.Clock() as ck:
            for k, cmd in enumerate(cmds):
                d = dst if k == len(cmds) - 1 else Path(f"{dst}.step{k}")
                run_cli([x.format(src=src, dst=d) for x in cmd] + ["--overwrite"], log)
                src = d
        row = {"cell": cell, "commands": log, "compress": ck.as_dict() if cmds else None,
               **score(dst, a.ppl_tokens, a.lambada), "cost": cost_summary(dst)}
        print(json.dumps(row), flush=True)
        C.append_jsonl(a.out, row)


if __name__ == "__main__":
    main()
