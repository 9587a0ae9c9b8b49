"""The laptop the voice-assistant thesis measured on (seed V §5.5.1), for validation only.

The thesis gives the CPU model and RAM size; its memory bandwidth and peak
throughput come from the CPU's public specification, not from the thesis.
"""
from . import Device, Fact

SEED_V = "seed V (voice-assistant thesis) §5.5.1"

THESIS_LAPTOP = Device(
    name="thesis-laptop",
    title="i7-8850H laptop, llama.cpp CPU, 6 threads (voice-assistant thesis)",
    kind="roofline",
    facts={
        "memory_bytes": Fact(62 * 1024 ** 3, "B", f"{SEED_V}: 62 GB DDR4"),
        "reserved_bytes": Fact(4 * 1024 ** 3, "B", "desktop OS and applications",
                               assumption=True),
        "bandwidth": Fact(42.7e9, "B/s", "dual-channel DDR4-2666 (Intel spec of the "
                          "i7-8850H; the thesis does not state it)", assumption=True),
        "peak_ops": Fact(6 * 2.6e9 * 32, "flop/s", f"derived: 6 cores x 2.6 GHz ({SEED_V}) x "
                         "32 flop/cycle (two AVX2 FMA units)", assumption=True),
        "act_bytes": Fact(2, "B", "FP16 KV cache (llama.cpp default)", assumption=True),
        "ops_per_element": Fact(5, "op/element", "norms, activations, softmax", assumption=True),
        "dequant_ops_per_weight": Fact(4, "op/weight", "unpack, convert, scale",
                                       assumption=True),
        "sparse_ops_per_weight": Fact(2, "op/weight", "expand a bitmap", assumption=True),
        "kernel_overhead_s": Fact(2e-6, "s/kernel", "thread-pool barrier per op",
                                  assumption=True),
        "power_w": Fact(45.0, "W", "Intel TDP of the i7-8850H", assumption=True),
    },
)
