"""The compression report: a Markdown table like the seeds' tables, JSON, and optional plots.

One row per model (the baseline, then every stage or every sweep point) with
the columns of the LLaMA thesis' Table A.1 (#Params, size, WikiText-style
perplexity, TriviaQA-style accuracy), the voice-assistant thesis' Table 5.6
(tool / syntax / parameter accuracy, tokens/s) and the cost model's verdict.
A column nobody measured (e.g. QA when `eval.qa = 0`) is left out rather than
filled with placeholders. Plots (perplexity vs size with its Pareto front,
per-stage bars) need matplotlib, an optional extra: without it only the
tables are written.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..checkpoint import atomic_write_bytes, atomic_write_text

# (metric key, column title, format)
COLUMNS = (
    ("params", "#Params", lambda v: f"{v / 1e6:.3f}M"),
    ("params_nonzero", "#Nonzero", lambda v: f"{v / 1e6:.3f}M"),
    ("params_low_rank", "#Low-rank", lambda v: f"{v / 1e6:.3f}M"),
    ("bytes", "Size (MiB)", lambda v: f"{v / 2 ** 20:.3f}"),
    ("perplexity", "PPL", lambda v: f"{v:.2f}"),
    ("toolcall", "Tool-call acc", lambda v: f"{v:.2f}"),
    ("tool", "Tool", lambda v: f"{v:.2f}"),
    ("syntax", "Syntax", lambda v: f"{v:.2f}"),
    ("parameters", "Params acc", lambda v: f"{v:.2f}"),
    ("choice", "Completion acc (norm)", lambda v: f"{v:.2f}"),
    ("qa_closed", "QA closed", lambda v: f"{100 * v:.1f}%"),
    ("qa_open", "QA open", lambda v: f"{100 * v:.1f}%"),
    ("prefill_tok_s", "Prefill tok/s", lambda v: f"{v:.0f}"),
    ("decode_tok_s", "Decode tok/s", lambda v: f"{v:.0f}"),
    ("verdict", "Cost model", str),
)


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Render a matplotlib figure to PNG in memory, write it atomically, close it."""
    import io
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _cell(metrics: dict, key: str, fmt) -> str:
    v = metrics.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt(v)


def markdown_table(rows: list[dict], first_columns: list[tuple[str, str]]) -> str:
    """rows: dicts with 'metrics' and the keys named in first_columns [(key, title)]."""
    present = [c for c in COLUMNS if any(r["metrics"].get(c[0]) is not None for r in rows)]
    head = [t for _, t in first_columns] + [t for _, t, _ in present]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k, _ in first_columns]
        cells += [_cell(r["metrics"], k, f) for k, _, f in present]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def options_text(options: dict) -> str:
    """Stage options as a short 'k=v' list (defaults included, None left out)."""
    return ", ".join(f"{k}={v}" for k, v in options.items() if v is not None and v != [])


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both size and perplexity (lower is better)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot(rows: list[dict], out: Path, label_key: str = "label") -> list[Path]:
    """perplexity_vs_size.png (with the Pareto front) and stages.png; [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = [r for r in rows if r["metrics"].get("perplexity") is not None]
    if not rows:
        return []
    written = []
    size = [r["metrics"]["bytes"] / 2 ** 20 for r in rows]
    ppl = [r["metrics"]["perplexity"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(size, ppl, s=14)
    front = pareto_front(list(zip(size, ppl)))
    ax.plot([size[i] for i in front], [ppl[i] for i in front], "r-", label="Pareto front")
    for i in front:
        ax.annotate(str(rows[i][label_key]), (size[i], ppl[i]), fontsize=6)
    ax.set_xlabel("size on disk (MiB)")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    written.append(save_figure(fig, out / "perplexity_vs_size.png"))
    if len(rows) <= 20:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        labels = [str(r[label_key]) for r in rows]
        axes[0].bar(labels, ppl)
        axes[0].set_ylabel("perplexity")
        axes[1].bar(labels, size)
        axes[1].set_ylabel("size (MiB)")
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        fig.tight_layout()
        written.append(save_figure(fig, out / "stages.png"))
    return written


def write_report(out: Path, title: str, preamble: str, rows: list[dict],
                 first_columns: list[tuple[str, str]], plots: bool = True) -> str:
    """report.md + report.json (+ PNGs) in `out`; returns the Markdown text."""
    out = Path(out)
    images = plot(rows, out) if plots else []
    text = f"# {title}\n\n{preamble}\n\n{markdown_table(rows, first_columns)}\n"
    if images:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in images) + "\n"
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "report.json", json.dumps(rows, indent=1, default=str) + "\n")
    return text
