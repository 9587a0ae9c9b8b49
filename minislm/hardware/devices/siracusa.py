"""Siracusa: 16 nm RISC-V SoC with an at-MRAM neural engine (Prasad et al., arXiv 2312.14750).

Memory hierarchy (seed L = the LLaMA thesis, §2.4):
    L3 off-chip (16 MB)  ->  L2 tile SRAM (activations, KV cache)  ->  L1 TCDM (256 KiB)
    MRAM weight memory (4 MiB) -> N-EUREKA weight port at 92 Gbit/s (no trip through L1)
Compute: N-EUREKA (8-bit activations, 2–8-bit weights) for the linear layers,
the octa-core RISC-V cluster for everything else (attention products, softmax,
norms, activations) and for weights the engine cannot take (float).

The paper's clock, DMA width and per-op energy are not in our sources
(`../shared/hardware.md`): those rows are assumptions, marked as such.
"""
from . import Device, Fact

PAPER = "Prasad et al., Siracusa, arXiv 2312.14750 (abstract)"
THESIS = "seed L (LLaMA thesis) §2.4"
TUTORIAL = "Deeploy tutorial (GVSoC), via shared/hardware.md"
MiB = 1024 * 1024

SIRACUSA = Device(
    name="siracusa",
    title="Siracusa (16 nm RISC-V SoC, N-EUREKA at-MRAM engine, 8-core cluster)",
    kind="siracusa",
    facts={
        "clock_hz": Fact(360e6, "Hz", "cluster and engine clock; not in our sources "
                         "(hardware.md: 'clock ... not found'); 360 MHz recalled from the "
                         "paper, unverified", assumption=True),
        "mram_bytes": Fact(4 * MiB, "B", f"{THESIS}; GVSoC wmem size 0x400000"),
        "l2_bytes": Fact(4 * MiB, "B", f"{THESIS} (the Deeploy tutorial says 2 MB: we follow "
                         "the thesis, change here to test the other)"),
        "l1_bytes": Fact(256 * 1024, "B", f"{THESIS}: 256 KiB TCDM, 16 word-interleaved banks"),
        "l3_bytes": Fact(16e6, "B", f"{TUTORIAL}: 16 MB off-chip L3"),
        "mram_bandwidth": Fact(92e9 / 8, "B/s", f"{THESIS}: 92 Gbit/s MRAM -> N-EUREKA"),
        "l3_bandwidth": Fact(0.4e9, "B/s", "off-chip L3 -> L2; not in our sources. "
                             "HyperBus-class 8-bit DDR at 200 MHz", assumption=True),
        "dma_bytes_per_cycle": Fact(8, "B/cycle", "cluster DMA L2 <-> L1, 64-bit AXI port "
                                    "as in other PULP clusters", assumption=True),
        "engine_peak_ops": Fact(1.95e12, "op/s", f"{PAPER}: peak 1.95 TOp/s (1 MAC = 2 op), "
                                "but the paper does not say at which weight bit width; using "
                                "it for every 2-8-bit weight width is our assumption",
                                assumption=True),
        "engine_utilisation": Fact(698 / 1950, "", f"698 GOp/s end-to-end at 8 bit / 1.95 "
                                   f"TOp/s peak ({PAPER}); assumes the peak is the 8-bit one "
                                   "and that the same fraction holds at every bit width and "
                                   "for these layer shapes", assumption=True),
        "engine_min_bits": Fact(2, "bit", "pulp-platform/neureka README: 2-8-bit weights"),
        "engine_max_bits": Fact(8, "bit", "pulp-platform/neureka README: 2-8-bit weights, "
                                "8-bit activations"),
        "act_bytes": Fact(1, "B", "8-bit activations and KV cache (N-EUREKA operands, "
                          "pulp-platform/neureka README)"),
        "cluster_cores": Fact(8, "", "pulp-platform siracusa config: 8 RI5CY-class cores"),
        "cluster_int8_macs_per_cycle": Fact(4, "MAC/cycle/core", "XPULP 4x8-bit SIMD dot "
                                            "product, one per cycle", assumption=True),
        "cluster_fp_flops_per_cycle": Fact(2, "flop/cycle/core", "one fp32 FMA per core "
                                           "per cycle", assumption=True),
        "cluster_parallel_efficiency": Fact(16.1 / 3.1 / 8, "", f"derived: {TUTORIAL}, "
                                            "microLlama128 16.1 Mcycles on 1 core vs 3.1 on "
                                            "8 cores = 5.19x of 8x"),
        "cycles_per_add": Fact(1, "cycle/element/core", "residual add, int8 SIMD-less",
                               assumption=True),
        "cycles_per_norm": Fact(4, "cycle/element/core", "LayerNorm/RMSNorm: a statistics "
                                "pass and a scaling pass", assumption=True),
        "cycles_per_activation": Fact(6, "cycle/element/core", "GELU/SiLU by lookup table "
                                      "or i-GELU polynomial", assumption=True),
        "cycles_per_softmax": Fact(10, "cycle/element/core", "max, exp (integer "
                                   "approximation), sum, divide", assumption=True),
        "cycles_per_rope": Fact(3, "cycle/element/core", "rotate a pair with precomputed "
                                "sin/cos", assumption=True),
        "cycles_per_sparse_weight": Fact(1, "cycle/weight/core", "expand a bitmap-compressed "
                                         "weight row (the engine takes only dense weights)",
                                         assumption=True),
        "kernel_overhead_cycles": Fact(5000, "cycle/kernel", "per kernel launch: cluster "
                                       "fork/join, tiling loop set-up, engine job "
                                       "configuration; order of magnitude from the Deeploy "
                                       "tutorial's cycle counts (see bench/COST_VALIDATION.md)",
                                       assumption=True),
        "tile_overhead_cycles": Fact(200, "cycle/tile", "per L1 tile: program two DMA "
                                     "transfers and wait on the double buffer", assumption=True),
        "power_w": Fact(1.95e12 / 8.84e12, "W", f"derived: 1.95 TOp/s / 8.84 TOp/J ({PAPER}); "
                        "used as the average power of the whole chip", assumption=True),
    },
)
