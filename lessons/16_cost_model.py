# %% [markdown]
# # Lesson 16 — From parameters to bytes to cycles: will it run on the device?
#
# Neither thesis could measure on its target: the LLaMA thesis aims at
# Siracusa, a RISC-V SoC whose neural engine reads weights from a 4 MiB MRAM at
# 92 Gbit/s; the voice-assistant thesis aims at a Jetson Nano (4 GB LPDDR4 at
# 25.6 GB/s). `minislm.hardware` predicts what would happen there, from the
# shapes alone: count the parameters, turn them into stored bytes (bits, groups,
# sparsity), then into time per kernel on a described device.
#
# Decoding one token reads every weight once and does only 2 operations per
# weight, so on both devices the question is mostly *how many bytes*, and
# *from which memory*:
#
#     time per token ≈ Σ_kernels max(compute, bytes / bandwidth) + overheads
#
# Every device number is in `minislm/hardware/devices/` with its source;
# assumptions are marked (`minislm cost --device siracusa --show-device`).

# %%
from minislm.config import Config
from minislm.hardware import estimate, format_report, get_device, parameter_count

MiB = 2 ** 20

# The published shapes (the same numbers as ../shared/data/configs/*.config.json).
GPT2 = Config.from_hf_dict({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768,
                            "n_layer": 12, "n_head": 12, "n_positions": 1024})
LLAMA_1B = Config.from_hf_dict({
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "tie_word_embeddings": True,
    "rope_theta": 500000.0})
# A TinyStories-scale LLaMA (llama2.c's stories260K shape): what MCU-class chips really run.
TINY = Config.from_hf_dict({
    "model_type": "llama", "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 5,
    "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 172,
    "max_position_embeddings": 512, "tie_word_embeddings": True})
MODELS = {"tiny (260K)": TINY, "GPT-2 124M": GPT2, "LLaMA-3.2 1B": LLAMA_1B}

# %% [markdown]
# ## 0. One roofline by hand
# One kernel: the query projection of LLaMA-3.2-1B's first block, decoding one
# token at 8 bits on the Jetson Nano's GPU. It does 2 operations per multiply-
# accumulate, plus (an assumption of the device file) 4 to unpack and scale each
# 8-bit weight; it reads the weights and its activations once. Compute and
# memory overlap, so the slower one sets the pace, and each launch costs a
# fixed overhead:
#
#     t = max(ops / peak_ops, bytes / bandwidth) + t_launch

# %%
nano = get_device("jetson-nano")
decode8 = estimate(LLAMA_1B, "jetson-nano", context=256, weight_bits=8)
op = next(o for o in decode8["ops"] if o["kind"] == "linear")
ops = 2 * op["macs"] + nano["dequant_ops_per_weight"] * op["macs"]     # one token: n_weights = macs
moved = op["weight_bytes"] + op["other_bytes"]                         # weights + activations
seconds = max(ops / nano["peak_ops"], moved / nano["bandwidth"]) + nano["kernel_overhead_s"]
print(f"{op['layer']} {op['op']}: {op['macs']:,.0f} MACs, {op['weight_bytes']:,.0f} weight "
      f"bytes -> {1e6 * seconds:.1f} µs by hand, {1e6 * op['seconds']:.1f} µs in "
      f"minislm.hardware (bottleneck {op['bottleneck']})")
assert abs(seconds / op["seconds"] - 1) < 1e-9
assert abs(sum(o["seconds"] for o in decode8["ops"]) / decode8["latency_s_per_token"] - 1) < 1e-6

# %% [markdown]
# ## 1. Parameters -> bytes
# b-bit codes cost b/8 bytes per weight, plus one float16 scale and a b-bit zero
# point per group of 128 inputs (≈ 0.16 bit per weight). Which variants fit the
# 4 MiB MRAM of Siracusa?

# %%
MRAM = get_device("siracusa")["mram_bytes"]
print(f"{'model':<14} {'params':>12} " + " ".join(f"{b:>2}-bit MiB" for b in (32, 8, 4, 2)))
fits_mram = {}
for name, config in MODELS.items():
    sizes = {b: estimate(config, "siracusa", context=64, weight_bits=b)["weight_bytes"]
             for b in (32, 8, 4, 2)}
    fits_mram[name] = [b for b, size in sizes.items() if size <= MRAM]
    print(f"{name:<14} {parameter_count(config):>12,} "
          + " ".join(f"{sizes[b] / MiB:>10.2f}" for b in (32, 8, 4, 2))
          + f"   fits MRAM at: {fits_mram[name] or 'none'}")

# %% [markdown]
# Even at 2 bits GPT-2 needs ~30 MiB: its 50257 x 768 embedding alone is
# 38.6 M weights. The MRAM is for models a thousand times smaller than
# LLaMA-1B — the thesis's point that compression is a *requirement* there.
#
# ## 2. Bytes -> cycles on Siracusa
# The tiny model fits. Per kernel, the engine (N-EUREKA) runs the linear layers,
# the 8-core cluster runs attention, softmax, norms; activations move L2 <-> L1
# by double-buffered DMA. At this size every kernel is short, so the fixed cost
# of launching it dominates:

# %%
tiny8 = estimate(TINY, "siracusa", context=128, weight_bits=8)
print(format_report(tiny8))

# %% [markdown]
# A model that *fills* the MRAM is another story: one wide block at 4 bits
# (3.6 MiB) streams its weights at 92 Gbit/s, and that sets the pace —
# tokens/s ≈ 11.5 GB/s / weight bytes.

# %%
WIDE = TINY.replace(vocab_size=256, d_model=768, n_layer=1, n_head=12, n_kv_head=12,
                    head_dim=64, d_ff=2048)
wide4 = estimate(WIDE, "siracusa", context=32, weight_bits=4)
bound = get_device("siracusa")["mram_bandwidth"] / wide4["weight_bytes"]
print(f"{wide4['weight_bytes'] / MiB:.2f} MiB: {wide4['tokens_per_s']:.0f} tokens/s, "
      f"MRAM-bandwidth bound would be {bound:.0f}; bottleneck: {wide4['bottleneck']}")

# %% [markdown]
# ## 3. What 4-bit and 2:4 sparsity buy on each device
# 2:4 sparsity zeroes half the weights; stored as the kept values plus a 1-bit
# mask, a 4-bit matrix drops from 4 to 3 bits per weight (−25 %). Neither device
# skips zeros in its multipliers, so the mask only saves bytes — and expanding it
# costs instructions.

# %%
variants = [("float32", 32, 0.0), ("8-bit", 8, 0.0), ("4-bit", 4, 0.0), ("4-bit + 2:4", 4, 0.5)]
results = {}
print(f"{'model':<14} {'device':<12} {'variant':<12} {'MiB':>9} {'fits':>5} {'tok/s':>9}  "
      "bottleneck")
for name in ("GPT-2 124M", "LLaMA-3.2 1B"):
    for device in ("jetson-nano", "siracusa"):
        for label, bits, sparsity in variants:
            r = estimate(MODELS[name], device, context=256, weight_bits=bits, sparsity=sparsity)
            results[name, device, label] = r
            print(f"{name:<14} {device:<12} {label:<12} {r['weight_bytes'] / MiB:>9.1f} "
                  f"{'yes' if r['fits'] else 'no':>5} {r['tokens_per_s']:>9.2f}  {r['bottleneck']}")

# %% [markdown]
# Reading the table:
# * Jetson Nano: float32 LLaMA-1B (4.6 GiB) does not fit the 4 GB board; 8-bit does,
#   and decoding is bandwidth-bound, so tokens/s scale with 1 / bytes. At 4 bits the
#   Maxwell GPU's dequantisation work (≈ 4 instructions per weight, an assumption)
#   catches up with the memory, and expanding a 2:4 mask adds more: sparsity buys
#   memory, not speed, on this GPU.
# * Siracusa: nothing bigger than a few million parameters stays on chip. Everything
#   that spills streams from off-chip L3 (and GPT-2 or LLaMA-1B do not fit even its
#   16 MB), so there every byte saved is time saved: 2:4 helps in proportion.
#
# ## 4. Against published measurements
# **Reference.** The roofline is an *upper bound* on speed; real runtimes reach
# a fraction of it. Two published figures (sources in /work/shared/hardware.md,
# the full comparison in `bench/COST_VALIDATION.md`):
# * llama.cpp on the Jetson Nano GPU decodes TinyLlama-1.1B Q4_K_M (a 636 MiB
#   file) at 6.69 tokens/s (kreier/llama.cpp-jetson);
# * Deeploy runs a TinyStories LLaMA on Siracusa at 340 tokens/s (arXiv 2408.04413;
#   its shape is not published, llama2.c's stories260K = TINY above is assumed).
# The size must land within 10 %, and each speed must be above the measurement
# but within the factor the validation found (≤ 6×).

# %%
TINYLLAMA = Config.from_hf_dict({
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 22,
    "num_attention_heads": 32, "num_key_value_heads": 4, "intermediate_size": 5632,
    "max_position_embeddings": 2048, "tie_word_embeddings": False})
tiny_llama = estimate(TINYLLAMA, "jetson-nano", context=64, weight_bits=4, group_size=32)
stories = estimate(TINY, "siracusa", context=128, weight_bits=8)
published = [("TinyLlama Q4 file, MiB", 636, tiny_llama["weight_bytes"] / MiB),
             ("Jetson Nano decode, tok/s", 6.69, tiny_llama["tokens_per_s"]),
             ("Siracusa TinyStories decode, tok/s", 340, stories["tokens_per_s"])]
for label, measured, predicted in published:
    print(f"{label:<36} measured {measured:>8.2f}   predicted {predicted:>8.2f}   "
          f"×{predicted / measured:.2f}")
assert abs(published[0][2] / 636 - 1) < 0.10
assert all(1 <= predicted / measured <= 6 for _, measured, predicted in published[1:])

# %%
assert fits_mram["tiny (260K)"] == [32, 8, 4, 2]
assert fits_mram["GPT-2 124M"] == [] and fits_mram["LLaMA-3.2 1B"] == []
assert tiny8["fits"] and tiny8["bottleneck"] == "kernel overhead"
assert wide4["bottleneck"] == "MRAM weight bandwidth" and wide4["tokens_per_s"] < bound
jet = {label: results["LLaMA-3.2 1B", "jetson-nano", label] for label, _, _ in variants}
assert not jet["float32"]["fits"] and jet["8-bit"]["fits"]
blocks = {label: jet[label]["weight_bytes_by_part"]["blocks"] for label in ("4-bit", "4-bit + 2:4")}
assert abs(blocks["4-bit + 2:4"] / blocks["4-bit"] - 0.77) < 0.02   # 3 bits + grid vs 4 bits + grid
sir = {label: results["GPT-2 124M", "siracusa", label] for label, _, _ in variants}
speed = {label: r["tokens_per_s"] for label, r in sir.items()}
assert speed["4-bit + 2:4"] > speed["4-bit"] > speed["8-bit"]
print("lesson 16 checks passed")

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/16_cost_model.py`)
# 1. Double the Jetson Nano's bandwidth (`get_device("jetson-nano").replace(
#    bandwidth=...)`). Predict: 8-bit LLaMA-1B decoding is bandwidth-bound, so it
#    speeds up — but by less than 2×, because the unpacking compute (6 operations
#    per weight) becomes the bottleneck; the compute-bound 4-bit + 2:4 barely moves.
# 2. Predict the 2-bit weight bytes of GPT-2 124M from its parameter count
#    alone (2 bits + a float16 scale and 2-bit zero per 128 weights ≈ 2.14 bits per
#    block weight; embeddings at 2 bits too) before asking `estimate`.
