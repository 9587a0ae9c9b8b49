"""Solutions to lesson 09's exercises: each prediction is asserted."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import calibration, load_tiny, ppl                          # noqa: E402
from minislm.prune import depth                                          # noqa: E402

model = load_tiny("gpt2")
calib = calibration(model)
influence = depth.importance(model, "block", calib)
by_ppl = depth.importance(model, "ppl", calib)
dense = ppl(model)

# 1. Unprotect the last block: block influence is lowest there (the last block turns the
#    stream least), so it goes; the perplexity metric would have dropped another block.
protected = depth.choose_blocks(influence, 1, protect_first=1, protect_last=1)
unprotected = depth.choose_blocks(influence, 1, protect_first=1, protect_last=0)
ppl_choice = depth.choose_blocks(by_ppl, 1, protect_first=1, protect_last=0)
p_unprotected = ppl(depth.remove_layers(model, unprotected))
p_ppl_choice = ppl(depth.remove_layers(model, ppl_choice))
print(f"1. block influence removes block {protected} with the last block protected, "
      f"{unprotected} without: perplexity {p_unprotected:.2f}; the perplexity metric removes "
      f"{ppl_choice}: {p_ppl_choice:.2f} (dense {dense:.2f})")
assert unprotected == [model.config.n_layer - 1] != protected
assert ppl_choice != unprotected and p_ppl_choice < p_unprotected

# 2. Remove block 0: its influence is by far the largest, and the perplexity explodes.
p_first = ppl(depth.remove_layers(model, [0]))
print(f"2. without block 0 (influence {influence[0]:.2f}): perplexity {p_first:.0f}, "
      f"{p_first / dense:.0f}× dense")
assert influence.argmax() == 0 and p_first > 10 * dense
print("lesson 09 solutions: all predictions hold")
