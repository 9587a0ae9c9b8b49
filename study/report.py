"""Tables (markdown, printed) and the Pareto plot from study/out/*.jsonl.

    cd <repo> && python study/report.py      # prints tables; writes study/pareto.png

The tables are pasted into study/RESULTS.md by hand, beside the reference numbers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402


def rows(name):
    path = C.OUT / name
    return [json.loads(line) for line in open(path)] if path.exists() else []


def baselines():
    print("| engine | task | value | items/tokens | wall s | CPU s | load (1/5/15 min) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows("baselines.jsonl"):
        v = r.get("ppl", r.get("acc"))
        extra = f" (norm {r['acc_norm']:.3f})" if "acc_norm" in r else ""
        n = r.get("tokens") if r["task"] == "ppl" else r.get("items")
        print(f"| {r['engine']} | {r['task']} | {v:.4f}{extra} | {n} | {r['wall_s']} | "
              f"{r['cpu_s']} | {r['load_start']} |")


# the thesis' Table A.1 (LLaMA-3.2-1B, 16 blocks, base PPL 20.05) for the same cell
THESIS = {"base": "20.05 (1.00x)", "depth_2": "55.24 (2.76x; 2 of 16)",
          "depth_4": "230.77 (11.5x; 4 of 16)", "depth_8": "227,735 (11,358x; 8 of 16)",
          "wanda_2:4": "161.10 (8.0x)", "wanda_4:8": "81.32 (4.1x)", "wanda_1:8": "27.19 (1.36x)",
          "gptq4_g128": "A.2: +7 % over unquantized", "gptq4_g128_eora16": "A.2: +6 %"}


def grid():
    g = rows("grid.jsonl")
    base = next((r for r in g if r["cell"] == "base"), None)
    print("| cell | PPL (x base) | thesis (ratio) | LAMBADA | #params | #nonzero | bytes | compress wall / CPU s "
          "| load | Siracusa | Jetson Nano |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in g:
        rel = f" ({r['ppl'] / base['ppl']:.2f}x)" if base else ""
        ck = r.get("compress") or {}
        cs = r["cost"]

        def verdict(c):
            if "error" in c:
                return "error"
            return f"{'fits' if c['fits'] else 'no fit'}, {c['tok_s']} tok/s"
        print(f"| {r['cell']} | {r['ppl']:.2f}{rel} | {THESIS.get(r['cell'], '–')} | "
              f"{r['lambada']:.2f} | "
              f"{r['params']:,} | {r['params_nonzero']:,} | "
              f"{r['bytes']:,} | {ck.get('wall_s', '-')} / {ck.get('cpu_s', '-')} | "
              f"{ck.get('load_start', r['eval']['load_start'])} | {verdict(cs['siracusa'])} | "
              f"{verdict(cs['jetson-nano'])} |")
    if g:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from minislm.evaluate.report import pareto_front
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
        for ax, key, label in ((axes[0], "bytes", "bytes on disk (MiB; pruned folders carry a 1-byte/weight mask)"),
                               (axes[1], "params_nonzero", "#nonzero parameters (M)")):
            pts = [(r[key] / (2**20 if key == "bytes" else 1e6), r["ppl"]) for r in g]
            front = set(pareto_front(pts))
            for i, (r, (x, y)) in enumerate(zip(g, pts)):
                ax.scatter(x, y, c="C3" if i in front else "C0")
                ax.annotate(r["cell"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(label, fontsize=8)
            ax.set_yscale("log")
        axes[0].set_ylabel("WikiText-2 PPL (first 4096 test tokens, T=512 S=256)")
        fig.suptitle("SmolLM2-135M-Instruct: size vs perplexity (red: Pareto front)")
        fig.tight_layout()
        fig.savefig(C.ROOT / "study" / "pareto.png", dpi=110)


if __name__ == "__main__":
    baselines()
    print()
    grid()
