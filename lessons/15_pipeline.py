# %% [markdown]
# # Lesson 15 — The whole pipeline: compress, read the report, choose a variant
#
# Every technique of lessons 7–14 is a function model -> new model. The LLaMA
# thesis chains them in one order — depth pruning → width (N:M) pruning →
# LoRA recovery → GPTQ → EoRA — and the GPT-2 slides in another (fine-tune →
# trim → prune → quantize). `minislm.pipeline` runs any such chain from a
# config: every *stage* is a small adapter around one technique module, the
# whole config is checked against the model's shape before any work starts,
# each stage's model is saved (atomically) and evaluated, and a report table
# collects parameters, bytes, perplexity, task accuracy, speed and the hardware
# cost model's verdict — the columns of the theses' tables.
#
# The same thing from the shell: `minislm compress --config configs/default.toml --out DIR`.

# %%
import tempfile
import time
from pathlib import Path

from minislm import pipeline
from minislm.errors import ConfigError
from minislm.evaluate.report import pareto_front

ROOT = Path(__file__).resolve().parents[1]

# %% [markdown]
# ## A pipeline is data
# The dict below is what `tomllib` makes of a TOML file with `[[stage]]`
# tables. Evaluation is cut down so the lesson runs in seconds: perplexity on
# the first 2,048 tokens of the corpus test split, sentence completion on 50
# held-out docstring sentences (the true second half against three others,
# chance 25 %), and no speed measurement.

# %%
config = {
    "model": str(ROOT / "weights" / "tiny-gpt2"),
    "eval": {"ppl_tokens": 2048, "seqlen": 128, "toolcall": 0, "choice": 50, "speed": False,
             "device": "siracusa"},
    "calibration": {"samples": 16, "seqlen": 128},
    "stage": [
        {"name": "depth_prune", "layers": 1, "method": "block"},
        {"name": "width_prune", "method": "wanda", "nm": "2:4"},
        {"name": "quantize", "method": "gptq", "bits": 4, "group_size": 32},
        {"name": "quantize_check_me", "bits": 4},
    ],
}

# %% [markdown]
# ## Mistakes are caught before any work
# A misspelt stage, an N:M pattern with N ≥ M, a group size that does not
# divide a layer's width: `plan` raises a `ConfigError` naming the stage and
# the field, before a single weight is touched.

# %%
try:
    pipeline.compress(config, tempfile.mkdtemp(), progress=False)
    raise AssertionError("the bad stage was not caught")
except ConfigError as e:
    print("refused:", e)
config["stage"][-1] = {"name": "eora", "rank": 8}

# %% [markdown]
# ## Run it
# Each stage lands in `out/stages/NN_name/model/` with a `done.json` marker;
# the report is rewritten after every stage.

# %%
out = Path(tempfile.mkdtemp()) / "compress"
start = time.perf_counter()
rows, report = pipeline.compress(config, out, progress=False)
first_run = time.perf_counter() - start
print(report)
print(f"{first_run:.1f} s")

# %% [markdown]
# ## Reading the report
# Depth pruning removes parameters *and* bytes. N:M pruning zeroes half the
# block weights (the #Nonzero column) but a dense file keeps the zeros (plus a
# mask file), so the size does not drop until a format skips them. 4-bit codes
# shrink the block weights about 7× (4 bits + a float16 scale and a 4-bit zero
# per group of 32), but the embeddings stay float32, so the file shrinks less.
# EoRA buys some perplexity back for a few kilobytes of low-rank factors.

# %%
base = rows[0].metrics
for r in rows:
    m = r.metrics
    print(f"{r.label:15s} size ×{m['bytes'] / base['bytes']:.2f}  nonzero "
          f"×{m['params_nonzero'] / base['params_nonzero']:.2f}  perplexity "
          f"×{m['perplexity'] / base['perplexity']:.2f}  {m['verdict']}")
labels = [r.label for r in rows]
quantized = rows[labels.index("03_quantize")].metrics
pruned = rows[labels.index("02_width_prune")].metrics
assert quantized["bytes"] < 0.8 * pruned["bytes"]
assert pruned["params_nonzero"] < 0.8 * base["params_nonzero"]

# %% [markdown]
# ## Choosing a variant
# No row is best at everything. The Pareto front keeps the rows that no other
# row beats in both size and perplexity; among them we take the smallest whose
# perplexity stays within a budget of the baseline (here 2×; a product team
# would set it from the task accuracy it needs).

# %%
points = [(r.metrics["bytes"], r.metrics["perplexity"]) for r in rows]
front = pareto_front(points)
budget = 2.0 * base["perplexity"]
within = [i for i in front if points[i][1] <= budget]
chosen = min(within, key=lambda i: points[i][0])
print("Pareto front:", [rows[i].label for i in front])
print(f"chosen: {rows[chosen].label} ({points[chosen][0] / 2 ** 20:.3f} MiB, perplexity "
      f"{points[chosen][1]:.2f}) from {rows[chosen].folder}")
assert chosen in front and points[chosen][1] <= budget

# %% [markdown]
# ## Interrupted? Resume.
# A finished stage is never redone: with `resume=True` every stage whose marker
# matches (same options, same input) is loaded from disk instead of recomputed.

# %%
start = time.perf_counter()
again, _ = pipeline.compress(config, out, resume=True, progress=False)
print(f"resumed run: {time.perf_counter() - start:.1f} s (first run {first_run:.1f} s), "
      f"{sum(r.resumed for r in again)} of {len(again)} rows reused")
assert all(r.resumed for r in again)
assert [r.metrics for r in again] == [r.metrics for r in rows]
