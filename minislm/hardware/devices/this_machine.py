"""This development machine running minislm itself: NumPy + OpenBLAS, float32, 2 cores.

Bandwidth and GEMM throughput were measured on 2026-11-22 (shared/hardware.md);
`bench/cost_validation.py` measures them again and overrides these defaults
with `Device.replace` before predicting minislm's decode speed.
"""
import os

from . import Device, Fact

MEASURED = "measured 2026-11-22, NumPy 2.4/OpenBLAS, shared/hardware.md"


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 1024 ** 3


THIS_MACHINE = Device(
    name="this-machine",
    title="this machine (minislm on NumPy/OpenBLAS, float32, 2 cores)",
    kind="roofline",
    facts={
        "memory_bytes": Fact(_physical_memory(), "B", "os.sysconf(SC_PHYS_PAGES) at import"),
        "reserved_bytes": Fact(2 * 1024 ** 3, "B", "OS, Python, NumPy work buffers",
                               assumption=True),
        "bandwidth": Fact(24e9, "B/s", f"{MEASURED}: large-array read ~24 GB/s "
                          "(GEMV 50257x768 ~22 GB/s)"),
        "peak_ops": Fact(200e9, "flop/s", f"{MEASURED}: fp32 GEMM ~200 GFLOP/s"),
        "act_bytes": Fact(4, "B", "minislm keeps activations and KV cache in float32"),
        "ops_per_element": Fact(10, "op/element", "NumPy passes: several ufuncs per "
                                "norm/activation", assumption=True),
        "dequant_ops_per_weight": Fact(80, "op/weight", "measured by bench/cost_validation.py "
                                       "(2026-11-22, 1 BLAS thread, CPU time): minislm's "
                                       "QuantizedTensor.linear, 4096x4096 4-bit g128, costs "
                                       "~0.7 ns per weight beyond a float GEMV = ~80 op at the "
                                       "GEMM rate (NumPy unpacks and rescales in full passes)"),
        "sparse_ops_per_weight": Fact(2, "op/weight", "expand a bitmap", assumption=True),
        "kernel_overhead_s": Fact(5e-6, "s/kernel", "Python + NumPy dispatch per op",
                                  assumption=True),
        "power_w": Fact(0.0, "W", "not measured (0 = no energy estimate)", assumption=True),
    },
)
