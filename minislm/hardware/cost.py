"""Will this model fit, and how fast will it run? Per-kernel cost on a described device.

`estimate(config, device, ...)` takes the shapes (a `Config`), a weight format
(bits, group size, sparsity) and a device from `minislm.hardware.devices`, lists
the kernels of one decode step and of a prefill (`workload.step_ops`), gives each
a time, and sums. Two cost models, one per kind of device:

Roofline (Jetson Nano GPU/CPU, CPUs; LLM-Viewer style), per kernel:
    ops   = 2·MACs + e·elements + q·N_w·[b < 16] + m·N_w·[bitmap]     (q dequantise, m unmask)
    bytes = weight bytes + activation bytes + KV-cache bytes
    t     = max(ops / peak_ops, bytes / bandwidth) + t_launch

Siracusa (tiled hierarchy), per kernel, in cycles at clock f:
    linear, 2 ≤ b ≤ 8, on N-EUREKA:  compute = 2·MACs / (peak · utilisation) · f
        weights stream MRAM → engine at 92 Gbit/s, or L3 → L2 → L1 when they spilled
    linear, float, attention products, norms, softmax, activations: on the cluster
        compute = MACs / (cores · SIMD MACs/cycle · η)   or  elements · c_op / (cores · η)
    activations and KV cache move L2 ↔ L1 by DMA, tiled to half of L1 (double buffering):
        t = max(compute, MRAM, L3, DMA) + first-tile fill + c_kernel + tiles · c_tile
    weights fill the MRAM in forward order, then the L2 left by activations, then L3.

Fits: Siracusa — all weights in MRAM and activations + KV cache in L2 (if weights
spill, they must at least fit L3); roofline — weights + KV cache + activations
within memory − reserved. Energy = average power × time (where a power is known).

Many device numbers are assumptions (no source gives them; `Fact.assumption`).
`estimate(..., assumptions=True)` redoes the estimate with each of them halved and
doubled and says which ones the fit verdict, the decode and the prefill speed rest
on (`minislm cost` prints this under the verdict and puts it in --json).
"""
from __future__ import annotations

import math
from collections import defaultdict

from ..config import Config
from ..errors import InputError
from .devices import Device, get_device
from .workload import (INT_BITS, Op, WeightFormat, kv_cache_bytes,
                       parameter_count, peak_activation_bytes, step_ops, stored_weight_bytes)


# ----------------------------------------------------------------------------- roofline
def roofline_op(op: Op, dev: Device) -> dict:
    """t = max(ops / peak, bytes / bandwidth) + launch overhead (module docstring)."""
    ops = 2.0 * op.macs + op.elements * dev["ops_per_element"]
    if op.kind == "linear" and op.weight_bits in INT_BITS:
        ops += dev["dequant_ops_per_weight"] * op.n_weights
    if op.bitmap_sparse:
        ops += dev["sparse_ops_per_weight"] * op.n_weights
    moved = op.weight_bytes + op.act_bytes + op.kv_bytes
    terms = {"compute": ops / dev["peak_ops"], "memory bandwidth": moved / dev["bandwidth"]}
    result = _finish(terms, dev["kernel_overhead_s"], "kernel launch")
    result["bytes_moved"] = {"DRAM": moved}
    return result


# ----------------------------------------------------------------------------- siracusa
def siracusa_act_bytes(weight_bits: int) -> int:
    """8-bit activations when N-EUREKA can run the linears, else float of the weights' width."""
    return 1 if weight_bits in INT_BITS else weight_bits // 8


def siracusa_op(op: Op, dev: Device, weights_at: str, kv_at: str, int8: bool = True) -> dict:
    """Cycles of one kernel on Siracusa, returned in seconds (module docstring).

    weights_at: where this kernel's weights live, "mram" | "l2" | "l3"; kv_at: "l2" | "l3".
    """
    f = dev["clock_hz"]
    dma = dev["dma_bytes_per_cycle"]                       # bytes per cycle, L2 <-> L1
    cores = dev["cluster_cores"] * dev["cluster_parallel_efficiency"]
    half_l1 = dev["l1_bytes"] / 2                          # double buffering
    if int8:                                               # SIMD dot products on 8-bit codes
        cluster_macs = dev["cluster_cores"] * dev["cluster_int8_macs_per_cycle"]
    else:                                                  # one FMA = one MAC per FPU
        cluster_macs = dev["cluster_cores"] * dev["cluster_fp_flops_per_cycle"] / 2
    cluster_macs *= dev["cluster_parallel_efficiency"]     # MACs per cycle
    cycles: dict[str, float] = {}
    via_dma = op.act_bytes + op.kv_bytes                   # bytes moved L2 <-> L1
    from_l3 = op.kv_bytes if kv_at == "l3" else 0.0        # bytes fetched off-chip first
    tiles = max(1, math.ceil(via_dma / half_l1))

    if op.kind == "linear":
        on_engine = dev["engine_min_bits"] <= op.weight_bits <= dev["engine_max_bits"]
        direct = on_engine and weights_at == "mram" and not op.bitmap_sparse
        row_bytes = op.act_bytes / op.tokens               # one token's input + output
        budget = half_l1 if direct else half_l1 / 2        # else weight tiles share L1
        rows_per_tile = max(1, int(budget // row_bytes))
        row_tiles = math.ceil(op.tokens / rows_per_tile)   # weights are re-read per row tile
        weight_traffic = op.weight_bytes * row_tiles
        col_tiles = max(1, math.ceil(row_bytes / budget))
        if not direct:                                     # weight tiles pass through L1
            col_tiles = max(col_tiles, math.ceil(op.weight_bytes / budget))
            via_dma += weight_traffic
        tiles = row_tiles * col_tiles
        if on_engine:
            cycles["engine compute"] = 2 * op.macs / (dev["engine_peak_ops"]
                                                      * dev["engine_utilisation"]) * f
            if op.bitmap_sparse:                           # the cluster expands the mask first
                cycles["cluster compute"] = op.n_weights * dev["cycles_per_sparse_weight"] / cores
        else:
            cycles["cluster compute"] = op.macs / cluster_macs
        if weights_at == "mram":
            cycles["MRAM weight bandwidth"] = weight_traffic / dev["mram_bandwidth"] * f
        elif weights_at == "l3":
            from_l3 += weight_traffic
    elif op.kind == "attention":
        cycles["cluster compute"] = op.macs / cluster_macs
    elif op.kind == "elementwise":
        cycles["cluster compute"] = op.elements * dev[f"cycles_per_{op.element_kind}"] / cores
        via_dma += op.weight_bytes
    else:                                                  # lookup: DMA the table rows
        via_dma += op.weight_bytes
        if weights_at == "mram":
            cycles["MRAM weight bandwidth"] = op.weight_bytes / dev["mram_bandwidth"] * f
        elif weights_at == "l3":
            from_l3 += op.weight_bytes

    cycles["L2-L1 DMA"] = via_dma / dma
    if from_l3:
        cycles["off-chip L3 bandwidth"] = from_l3 / dev["l3_bandwidth"] * f
    fill = min(via_dma / tiles, half_l1) / dma             # the first tile is not overlapped
    overhead = dev["kernel_overhead_cycles"] + tiles * dev["tile_overhead_cycles"] + fill
    result = _finish({k: v / f for k, v in cycles.items()}, overhead / f, "kernel overhead",
                     tiles=tiles)
    result["runs_on"] = ("N-EUREKA" if "engine compute" in cycles else
                         "cluster" if "cluster compute" in cycles else "DMA")
    mram_bytes = cycles.get("MRAM weight bandwidth", 0.0) / f * dev["mram_bandwidth"]
    result["bytes_moved"] = {"MRAM": mram_bytes, "L3": from_l3, "L2-L1 DMA": via_dma}
    result["cycles"] = result["seconds"] * f
    return result


def _finish(terms: dict, overhead_s: float, overhead_name: str, tiles: int = 1) -> dict:
    """Overlapped terms: the slowest one sets the pace; the overhead adds on top."""
    name, t = max(terms.items(), key=lambda kv: kv[1])
    bottleneck = overhead_name if overhead_s > t else name
    return {"seconds": t + overhead_s, "bottleneck": bottleneck, "terms": terms,
            "overhead_s": overhead_s, "tiles": tiles}


# ----------------------------------------------------------------------------- steps
def place_weights(ops: list[Op], mram: float, l2_free: float, tied: bool) -> dict:
    """Where each weight lives on Siracusa: (layer, name) -> "mram" | "l2" | "l3".

    Linear weights fill the MRAM in forward order, what does not fit goes to the
    L2 left over by activations and KV cache, the rest stays in off-chip L3.
    Embedding rows are looked up, not streamed: the table stays in L3 unless it
    is the tied LM head.
    """
    where, used = {}, {"mram": 0.0, "l2": 0.0}
    capacity = {"mram": mram, "l2": l2_free}
    for op in ops:
        if op.kind != "linear":
            continue
        for level in ("mram", "l2", "l3"):
            if level == "l3" or used[level] + op.weight_bytes <= capacity[level]:
                where[(op.layer, op.name)] = level
                used[level] = used.get(level, 0.0) + op.weight_bytes
                break
    for op in ops:
        if op.kind == "lookup":
            where[(op.layer, op.name)] = where[("head", "lm_head")] if tied else "l3"
    return where


def _cost_step(ops: list[Op], dev: Device, where: dict | None, kv_at: str,
               act_bytes: float) -> tuple[float, list[dict]]:
    rows = []
    for op in ops:
        if dev.kind == "siracusa":
            c = siracusa_op(op, dev, where.get((op.layer, op.name), "l2"), kv_at,
                            int8=act_bytes == 1)
        else:
            c = roofline_op(op, dev)
        rows.append({"layer": op.layer, "op": op.name, "kind": op.kind, "macs": op.macs,
                     "weight_bytes": op.weight_bytes,
                     "other_bytes": op.act_bytes + op.kv_bytes,
                     "bytes_moved": c["bytes_moved"], "seconds": c["seconds"],
                     "bottleneck": c["bottleneck"], "tiles": c["tiles"]})
        if "cycles" in c:
            rows[-1]["cycles"] = c["cycles"]
        if where is not None:
            rows[-1]["runs_on"] = c["runs_on"]
            if op.kind in ("linear", "lookup"):
                rows[-1]["weights_at"] = where.get((op.layer, op.name))
    return sum(r["seconds"] for r in rows), rows


def _by_layer(rows: list[dict]) -> list[dict]:
    """Per-layer sums; a layer's bottleneck is the label that cost it the most time."""
    order, acc = [], {}
    for r in rows:
        if r["layer"] not in acc:
            order.append(r["layer"])
            acc[r["layer"]] = {"layer": r["layer"], "macs": 0.0, "weight_bytes": 0.0,
                               "other_bytes": 0.0, "bytes_moved": defaultdict(float),
                               "seconds": 0.0, "_by": defaultdict(float)}
        a = acc[r["layer"]]
        for key in ("macs", "weight_bytes", "other_bytes", "seconds"):
            a[key] += r[key]
        for level, n in r["bytes_moved"].items():
            a["bytes_moved"][level] += n
        a["_by"][r["bottleneck"]] += r["seconds"]
    out = []
    for name in order:
        a = acc[name]
        by = a.pop("_by")
        a["bottleneck"] = max(by.items(), key=lambda kv: kv[1])[0]
        a["bytes_moved"] = dict(a["bytes_moved"])
        out.append(a)
    return out


def _bottleneck(rows: list[dict]) -> str:
    by = defaultdict(float)
    for r in rows:
        by[r["bottleneck"]] += r["seconds"]
    return max(by.items(), key=lambda kv: kv[1])[0]


# ----------------------------------------------------------------------------- estimate
def estimate(config: Config, device, context: int | None = None, weight_bits: int = 32,
             sparsity: float = 0.0, group_size: int = 128, sym: bool = False,
             embedding_bits: int | None = None, eora_rank: int = 0,
             all_logits: bool = False, assumptions: bool = False) -> dict:
    """Fit, latency and bottleneck of `config` on `device` (a name or a `Device`).

    context: tokens already in the KV cache when the measured decode step runs,
             and the length of the prompt whose prefill is costed
             (None: 256, or max_position − 1 when that is smaller).
    weight_bits: 32/16 float or 2…8 integer codes, groups of `group_size` input columns.
    sparsity: fraction of zeros in the block linear weights (bitmap storage when smaller).
    embedding_bits: embedding tables and the LM head (None: same as weight_bits).
    eora_rank: rank of a float32 EoRA correction on every block linear (0: none).
    all_logits: the prefill computes logits for every prompt position (plain forward).
    assumptions: also say which of the device's *assumed* facts (no source gives them)
             the verdict rests on: key `assumptions` (see `assumption_effects`; it
             redoes the estimate twice per assumed fact).
    Returns a dict: totals (`fits`, `weight_bytes`, `latency_s_per_token`,
    `tokens_per_s`, `bottleneck`, `prefill_s`, `energy_j_per_token`, `verdict`, …),
    `checks` (memory need vs have), `layers` (per-layer rows of one decode step) and
    `ops` (its per-kernel rows: MACs, bytes moved per memory level, seconds, the
    bottleneck; on Siracusa also cycles, the unit that runs it and where its weights live).
    """
    dev = get_device(device)
    if context is None:
        context = min(256, config.max_position - 1)
    if not isinstance(context, int) or context < 1:
        raise InputError(f"context must be a positive number of tokens, found {context!r}")
    if context + 1 > config.max_position:
        raise InputError(f"context {context} + 1 new token exceeds the model's "
                         f"max_position {config.max_position}")
    fmt = WeightFormat(weight_bits, group_size, sym, float(sparsity), embedding_bits, eora_rank)
    fmt.validate()
    parts = stored_weight_bytes(config, fmt)
    weight_bytes = sum(parts.values())
    a = siracusa_act_bytes(weight_bits) if dev.kind == "siracusa" else dev["act_bytes"]
    kv = kv_cache_bytes(config, context + 1, a)
    acts = max(peak_activation_bytes(config, context, 0, a),
               peak_activation_bytes(config, 1, context, a))
    decode = step_ops(config, fmt, 1, context, a)
    prefill = step_ops(config, fmt, context, 0, a, all_logits=all_logits)

    if dev.kind == "siracusa":
        kv_at = "l2" if kv + acts <= dev["l2_bytes"] else "l3"
        l2_free = max(0.0, dev["l2_bytes"] - kv - acts) if kv_at == "l2" else 0.0
        where = place_weights(decode, dev["mram_bytes"] - parts["norms_biases"], l2_free,
                              config.tied)
        spilled = sum(op.weight_bytes for op in decode
                      if op.kind == "linear" and where[(op.layer, op.name)] == "l3")
        if not config.tied:                          # the input embedding stays off-chip
            spilled += parts["embeddings"]
        checks = [_check("MRAM: weights", weight_bytes, dev["mram_bytes"]),
                  _check("L2: activations + KV cache", kv + acts, dev["l2_bytes"])]
        if weight_bytes > dev["mram_bytes"]:
            checks.append(_check("L3 off-chip: weights that spill from MRAM and L2", spilled,
                                 dev["l3_bytes"]))
        fits = checks[0]["fits"] and checks[1]["fits"]
    else:
        where, kv_at = None, "dram"
        available = dev["memory_bytes"] - dev["reserved_bytes"]
        checks = [_check("DRAM: weights + KV cache + activations", weight_bytes + kv + acts,
                         available)]
        fits = checks[0]["fits"]

    t_decode, rows = _cost_step(decode, dev, where, kv_at, a)
    t_prefill, _ = _cost_step(prefill, dev, where, kv_at, a)
    power = dev.facts["power_w"].value if "power_w" in dev.facts else 0.0
    result = {
        "device": dev.name, "device_title": dev.title, "family": config.family,
        "parameters": parameter_count(config), "weight_bits": weight_bits,
        "embedding_bits": fmt.emb_bits, "group_size": group_size, "sparsity": float(sparsity),
        "context": context, "activation_bytes": a,
        "fits": bool(fits), "weight_bytes": weight_bytes, "weight_bytes_by_part": parts,
        "kv_cache_bytes": kv, "activation_peak_bytes": acts,
        "latency_s_per_token": t_decode, "tokens_per_s": 1.0 / t_decode,
        "bottleneck": _bottleneck(rows),
        "prefill_s": t_prefill, "prefill_tokens_per_s": context / t_prefill,
        "energy_j_per_token": power * t_decode if power > 0 else None,
        "verdict": _verdict(checks),
        "checks": checks, "layers": _by_layer(rows), "ops": rows,
    }
    if assumptions:
        result["assumptions"] = assumption_effects(
            config, dev, result, dict(context=context, weight_bits=weight_bits,
                                      sparsity=sparsity, group_size=group_size, sym=sym,
                                      embedding_bits=embedding_bits, eora_rank=eora_rank,
                                      all_logits=all_logits))
    return result


ASSUMPTION_FACTOR = 2.0


def assumption_effects(config: Config, dev: Device, base: dict, options: dict,
                       factor: float = ASSUMPTION_FACTOR) -> dict:
    """Which assumed facts of `dev` the verdict of `base` (an `estimate`) rests on.

    Every fact marked `assumption` is divided and multiplied by `factor` in turn and
    the estimate redone with `options`. The fit verdict rests on the fact when a
    memory check's need or capacity moves with it; decode (prefill) tokens/s rests
    on it when the decode step's (prefill's) time moves by more than 0.1 %; the
    energy when the energy moves. Returns {"factor", "fit": [facts], "tokens_per_s":
    [facts], "prefill_tokens_per_s": [facts], "energy": [facts], "effects": one row
    per fact something rests on, the strongest first: the fact, its value and unit,
    and `fits_at`, `tokens_per_s_at`, `prefill_tokens_per_s_at`, `bottleneck_at` as
    [at value ÷ factor, at value × factor]}.
    """
    speeds = ("tokens_per_s", "prefill_tokens_per_s")
    def memory(r):
        return [(c["need_bytes"], c["have_bytes"]) for c in r["checks"]]

    rows = []
    for key, fact in dev.facts.items():
        if not fact.assumption:
            continue
        what_if = [estimate(config, dev.replace(f"what-if: {key} × {f:g}", **{key: fact.value * f}),
                            **options) for f in (1 / factor, factor)]
        rests = {"fit": any(memory(r) != memory(base) for r in what_if),
                 **{v: any(abs(r[v] / base[v] - 1) > 1e-3 for r in what_if) for v in speeds},
                 "energy": any(r["energy_j_per_token"] != base["energy_j_per_token"]
                               for r in what_if)}
        if any(rests.values()):
            rows.append({"fact": key, "value": fact.value, "unit": fact.unit, **rests,
                         "fits_at": [r["fits"] for r in what_if],
                         **{v + "_at": [r[v] for r in what_if] for v in speeds},
                         "bottleneck_at": [r["bottleneck"] for r in what_if]})
    rows.sort(key=lambda r: -max(abs(math.log(t / base[v])) for v in speeds
                                 for t in r[v + "_at"]))
    return {"factor": factor, **{what: [r["fact"] for r in rows if r[what]]
                                 for what in ("fit", *speeds, "energy")},
            "effects": rows}


def _check(memory: str, need: float, have: float) -> dict:
    return {"memory": memory, "need_bytes": need, "have_bytes": have, "fits": need <= have,
            "ratio": need / have if have > 0 else None}


def _verdict(checks: list[dict]) -> str:
    parts = []
    for c in checks:
        word = "fits" if c["fits"] else "does NOT fit"
        parts.append(f"{c['memory']} {word}: {_mib(c['need_bytes'])} of "
                     f"{_mib(c['have_bytes'])}{_percent(c)}")
    return "; ".join(parts)


def _percent(check: dict) -> str:
    return "" if check["ratio"] is None else f" ({100 * check['ratio']:.0f}%)"


def _mib(n: float) -> str:
    return f"{n / 2 ** 20:.2f} MiB" if n < 2 ** 30 else f"{n / 2 ** 30:.2f} GiB"


# ----------------------------------------------------------------------------- report
def format_report(r: dict, show_ops: bool = False) -> str:
    """Human-readable: header, memory checks, per-layer table of one decode step, totals."""
    lines = [f"{r['device_title']}",
             f"model: {r['family']}, {r['parameters'] / 1e6:.2f} M parameters, "
             f"{r['weight_bits']}-bit weights (embeddings {r['embedding_bits']}-bit, "
             f"group {r['group_size']}), sparsity {r['sparsity']:.2f}, context {r['context']}",
             ""]
    for c in r["checks"]:
        lines.append(f"  [{'ok' if c['fits'] else 'NO'}] {c['memory']}: need "
                     f"{_mib(c['need_bytes'])}, have {_mib(c['have_bytes'])}{_percent(c)}")
    rows = r["ops"] if show_ops else r["layers"]
    lines += ["", f"one decode step at context {r['context']}:",
              f"{'layer':<10} {'op' if show_ops else '':<15} {'MMAC':>9} {'weights KiB':>12} "
              f"{'other KiB':>10} {'time us':>10} {'share':>6}  bottleneck"]
    total = r["latency_s_per_token"]
    for row in rows:
        lines.append(f"{row['layer']:<10} {row.get('op', ''):<15} {row['macs'] / 1e6:>9.3f} "
                     f"{row['weight_bytes'] / 1024:>12.1f} {row['other_bytes'] / 1024:>10.1f} "
                     f"{row['seconds'] * 1e6:>10.1f} {100 * row['seconds'] / total:>5.1f}%  "
                     f"{row['bottleneck']}"
                     + (f" [{row['runs_on']}, weights in {row['weights_at']}]"
                        if show_ops and row.get("weights_at") else
                        f" [{row['runs_on']}]" if show_ops and "runs_on" in row else ""))
    energy = r["energy_j_per_token"]
    lines += ["",
              f"weights stored: {_mib(r['weight_bytes'])}   KV cache: {_mib(r['kv_cache_bytes'])}",
              f"decode: {total * 1e3:.3f} ms/token = {r['tokens_per_s']:.1f} tokens/s "
              f"(bottleneck: {r['bottleneck']})"
              + (f", {energy * 1e6:.0f} uJ/token" if energy else ""),
              f"prefill of {r['context']} tokens: {r['prefill_s'] * 1e3:.1f} ms = "
              f"{r['prefill_tokens_per_s']:.1f} tokens/s",
              f"verdict: {'FITS' if r['fits'] else 'DOES NOT FIT'} — {r['verdict']}"]
    if "assumptions" in r:
        lines += _assumption_lines(r)
    return "\n".join(lines)


def _assumption_lines(r: dict) -> list[str]:
    """Which assumed device facts the fit and the tokens/s rest on, with what-ifs."""
    a, k = r["assumptions"], r["assumptions"]["factor"]
    fits = lambda ok: "FITS" if ok else "DOES NOT FIT"
    lines = ["", f"assumptions (device facts no source gives; --show-device lists them), "
                 f"each redone at ÷{k:g} and ×{k:g}:"]
    if a["fit"]:
        lines.append("  the fit verdict rests on assumptions: " + ", ".join(
            f"{e['fact']} ({fits(e['fits_at'][0])} at ÷{k:g}, {fits(e['fits_at'][1])} at "
            f"×{k:g})" for e in a["effects"] if e["fit"]))
    else:
        lines.append("  the fit verdict rests on sourced facts only")
    for what, name in (("tokens_per_s", "decode tokens/s"),
                       ("prefill_tokens_per_s", "prefill tokens/s")):
        facts = a[what]
        lines.append(f"  {name} rests on " + (", ".join(facts) if facts else
                                               "sourced facts only"))
    speed = [e for e in a["effects"] if e["tokens_per_s"] or e["prefill_tokens_per_s"]]
    if speed:
        lines.append(f"  {'fact':<28} {'value':>10} {'decode tok/s ÷, ×':>19} "
                     f"{'prefill tok/s ÷, ×':>21}  decode bottleneck ÷ / ×")
    for e in speed:
        (d0, d1), (p0, p1) = e["tokens_per_s_at"], e["prefill_tokens_per_s_at"]
        lines.append(f"  {e['fact']:<28} {e['value']:>10.4g} {d0:>9.1f} {d1:>9.1f} "
                     f"{p0:>10.1f} {p1:>10.1f}  {e['bottleneck_at'][0]} / "
                     f"{e['bottleneck_at'][1]}")
    if a["energy"] and "power_w" in a["energy"]:
        lines.append("  the energy per token also rests on the assumed power_w")
    return lines
