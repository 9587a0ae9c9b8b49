"""NVIDIA Jetson Nano 4 GB: one shared LPDDR4 for a Maxwell GPU and four Cortex-A57.

Seed V = the voice-assistant thesis §4.3 (its deployment target). Both executors
are roofline devices: time = max(ops / peak, bytes / bandwidth) per kernel.
"""
from . import Device, Fact

SEED_V = "seed V (voice-assistant thesis) §4.3"
GiB = 1024 ** 3

_MEMORY = {
    "memory_bytes": Fact(4 * GiB, "B", f"{SEED_V}: 4 GB LPDDR4, shared by CPU and GPU"),
    "reserved_bytes": Fact(1 * GiB, "B", "L4T Ubuntu + CUDA context + runtime buffers, "
                           "unavailable to the model", assumption=True),
    "bandwidth": Fact(25.6e9, "B/s", f"{SEED_V}: LPDDR4 64-bit @ 25.6 GB/s"),
    "power_w": Fact(10.0, "W", "vendor: 10 W power mode (MAXN); 5 W mode also exists"),
}

JETSON_NANO = Device(
    name="jetson-nano",
    title="Jetson Nano 4 GB, GPU executor (128 Maxwell cores @ 922 MHz, 25.6 GB/s)",
    kind="roofline",
    facts={
        **_MEMORY,
        "peak_ops": Fact(236e9, "flop/s", "derived: 472 GFLOP/s FP16 (vendor) / 2 = FP32 "
                         "(128 cores x 2 x 922 MHz = 236); llama.cpp's quantized kernels "
                         "accumulate in FP32"),
        "act_bytes": Fact(2, "B", "FP16 activations and KV cache (llama.cpp default cache "
                          "type f16)", assumption=True),
        "ops_per_element": Fact(5, "op/element", "norms, activations, softmax", assumption=True),
        "dequant_ops_per_weight": Fact(4, "op/weight", "unpack (shift, mask), convert, scale",
                                       assumption=True),
        "sparse_ops_per_weight": Fact(2, "op/weight", "expand a bitmap: no sparse units on "
                                      "Maxwell (sparse tensor cores arrived with Ampere)",
                                      assumption=True),
        "kernel_overhead_s": Fact(5e-6, "s/kernel", "CUDA kernel launch on Tegra X1",
                                  assumption=True),
    },
)

JETSON_NANO_CPU = Device(
    name="jetson-nano-cpu",
    title="Jetson Nano 4 GB, CPU executor (4x Cortex-A57 @ 1.43 GHz, NEON, 25.6 GB/s)",
    kind="roofline",
    facts={
        **_MEMORY,
        "peak_ops": Fact(4 * 1.43e9 * 8, "flop/s", f"derived: 4 cores x 1.43 GHz ({SEED_V}) "
                         "x 8 flop/cycle (one 128-bit NEON FMA per cycle: an assumption)",
                         assumption=True),
        "act_bytes": Fact(2, "B", "FP16 KV cache (llama.cpp default)", assumption=True),
        "ops_per_element": Fact(5, "op/element", "norms, activations, softmax", assumption=True),
        "dequant_ops_per_weight": Fact(4, "op/weight", "unpack, convert, scale (ARMv8.0 has "
                                       "no int8 dot product)", assumption=True),
        "sparse_ops_per_weight": Fact(2, "op/weight", "expand a bitmap", assumption=True),
        "kernel_overhead_s": Fact(2e-6, "s/kernel", "thread-pool barrier per op",
                                  assumption=True),
    },
)
