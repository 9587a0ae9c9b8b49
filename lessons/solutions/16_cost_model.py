"""Solutions to lesson 16's exercises: each prediction is asserted."""
from minislm.config import Config
from minislm.hardware import estimate, get_device, parameter_count

LLAMA_1B = Config.from_hf_dict({
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "tie_word_embeddings": True,
    "rope_theta": 500000.0})
GPT2 = Config.from_hf_dict({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768,
                            "n_layer": 12, "n_head": 12, "n_positions": 1024})

# 1. Twice the bandwidth: the bandwidth-bound 8-bit decode speeds up until the unpacking
#    compute becomes the limit (less than 2×); the compute-bound 4-bit + 2:4 barely moves.
nano = get_device("jetson-nano")
fast = nano.replace(bandwidth=2 * nano["bandwidth"])
speedup = {}
for label, options in (("8-bit", dict(weight_bits=8)),
                       ("4-bit + 2:4", dict(weight_bits=4, sparsity=0.5))):
    slow_r = estimate(LLAMA_1B, nano, context=256, **options)
    fast_r = estimate(LLAMA_1B, fast, context=256, **options)
    speedup[label] = fast_r["tokens_per_s"] / slow_r["tokens_per_s"]
    print(f"1. {label:<12} {slow_r['tokens_per_s']:.2f} -> {fast_r['tokens_per_s']:.2f} tok/s "
          f"(×{speedup[label]:.2f}), bottleneck {slow_r['bottleneck']} -> {fast_r['bottleneck']}")
    if label == "8-bit":
        assert slow_r["bottleneck"] == "memory bandwidth" and fast_r["bottleneck"] == "compute"
assert 1.3 < speedup["8-bit"] < 2.0
assert speedup["4-bit + 2:4"] < 1.1

# 2. GPT-2 at 2 bits from the parameter count: 2 bits + 16-bit scale + 2-bit zero per 128 weights.
n = parameter_count(GPT2)
predicted = n * (2 + 18 / 128) / 8
actual = estimate(GPT2, "siracusa", context=64, weight_bits=2)["weight_bytes"]
print(f"2. GPT-2 2-bit: predicted {predicted / 2**20:.1f} MiB, estimate {actual / 2**20:.1f} MiB")
assert abs(predicted / actual - 1) < 0.05
print("lesson 16 solutions: all predictions hold")
