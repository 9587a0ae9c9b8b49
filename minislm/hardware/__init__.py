"""Hardware cost model: device descriptions with sources, and per-kernel cost estimates.

    from minislm.hardware import estimate
    r = estimate(config, "siracusa", context=256, weight_bits=4, sparsity=0.5)
    r["fits"], r["tokens_per_s"], r["bottleneck"]

See `cost.py` for the equations, `workload.py` for the MAC and byte counts and
`devices/` for every device number with its source.
"""
from .cost import estimate, format_report
from .devices import DEVICES, Device, Fact, get_device
from .workload import WeightFormat, parameter_count, stored_weight_bytes

__all__ = ["DEVICES", "Device", "Fact", "WeightFormat", "estimate", "format_report",
           "get_device", "parameter_count", "stored_weight_bytes"]
