"""Solutions to lesson 15's exercises: each prediction is asserted."""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minislm                                                           # noqa: E402
from common import out_dir, toolcall_model, toolcall_score               # noqa: E402
from minislm import pipeline                                             # noqa: E402
from minislm.errors import ConfigError                                   # noqa: E402
from minislm.evaluate.report import pareto_front                         # noqa: E402

# Lesson 15's pipeline; resume=True reuses the lesson's stage folders when it has run.
config = {
    "model": str(toolcall_model().path),
    "eval": {"ppl_tokens": 2048, "seqlen": 128, "toolcall": 0, "choice": 0, "speed": False,
             "device": "siracusa"},
    "calibration": {"samples": 16, "seqlen": 128},
    "stage": [
        {"name": "depth_prune", "layers": 1, "method": "block"},
        {"name": "width_prune", "method": "wanda", "nm": "2:4"},
        {"name": "quantize", "method": "gptq", "bits": 4, "group_size": 32},
        {"name": "eora", "rank": 8},
    ],
}
rows, _ = pipeline.compress(config, out_dir() / "15_compress", resume=True, progress=False)
task = [toolcall_score(minislm.load(r.folder))["all"] for r in rows]
points = [(r.metrics["bytes"], 1 - t) for r, t in zip(rows, task)]
front = pareto_front(points)

# 1. Any nonzero score is enough: the smallest row on the front that still gets one call right.
within = [i for i in front if task[i] > 0]
chosen = min(within, key=lambda i: points[i][0])
print(f"1. chosen: {rows[chosen].label} ({points[chosen][0]:,} bytes, tool calls "
      f"{task[chosen]:.0%})")
assert chosen != 0 and points[chosen][0] == min(p[0] for p in points)

# 2. "4:2" is refused before any work, naming the stage.
bad = copy.deepcopy(config)
bad["stage"][1]["nm"] = "4:2"
target = out_dir("15_refused_nm")
try:
    pipeline.compress(bad, target, progress=False)
    raise AssertionError("4:2 was accepted")
except ConfigError as e:
    print(f"2. refused: {e}")
    assert "width_prune" in str(e)
assert not (target / "stages").exists()
print("lesson 15 solutions: all predictions hold")
