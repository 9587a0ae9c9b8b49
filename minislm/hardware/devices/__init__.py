"""Devices as data: every number is a `Fact` that names its source.

A fact is either published (a paper, a datasheet, a thesis section), measured
(on this machine, with the command), derived from other facts (the formula is
in the source string), or an *assumption* (`assumption=True`): a number no
source gave us, chosen explicitly so a reader can change it and see what moves.
`minislm cost --device D --show-device` prints the table.

Two kinds of device, two cost models (see `minislm.hardware.cost`):
  * "roofline":  one memory (DRAM) and one compute peak — Jetson Nano, CPUs.
  * "siracusa":  a tiled hierarchy L3 → MRAM/L2 → L1 with an engine and a cluster.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...errors import ConfigError


@dataclass(frozen=True)
class Fact:
    """One number of a device with its unit and source (`assumption`: no source states it)."""
    value: float
    unit: str
    source: str
    assumption: bool = False


@dataclass(frozen=True)
class Device:
    """A device as data: its CLI name, a title, the cost model's kind and its facts by key."""
    name: str            # CLI name, e.g. "jetson-nano"
    title: str           # one line for reports
    kind: str            # "roofline" | "siracusa"
    facts: dict          # key -> Fact

    def __getitem__(self, key: str) -> float:
        try:
            return self.facts[key].value
        except KeyError:
            raise ConfigError(f"device '{self.name}' has no fact '{key}' "
                              f"(known: {', '.join(sorted(self.facts))})") from None

    def replace(self, source: str = "user override", **values) -> "Device":
        """A copy with some facts changed (e.g. a bandwidth measured just now)."""
        facts = dict(self.facts)
        for key, value in values.items():
            old = facts.get(key)
            if old is None:
                raise ConfigError(f"device '{self.name}' has no fact '{key}'")
            facts[key] = Fact(float(value), old.unit, source, assumption=False)
        return dataclasses.replace(self, facts=facts)

    def table(self) -> str:
        """The facts as a Markdown table (value, unit, source; assumptions marked)."""
        lines = [f"{self.title}", "", "| fact | value | unit | source |", "|---|---|---|---|"]
        for key, f in self.facts.items():
            mark = "**assumption**: " if f.assumption else ""
            lines.append(f"| {key} | {f.value:.6g} | {f.unit} | {mark}{f.source} |")
        return "\n".join(lines)


def _registry() -> dict:
    from .jetson_nano import JETSON_NANO, JETSON_NANO_CPU
    from .siracusa import SIRACUSA
    from .this_machine import THIS_MACHINE
    from .thesis_laptop import THESIS_LAPTOP
    return {d.name: d for d in (SIRACUSA, JETSON_NANO, JETSON_NANO_CPU, THIS_MACHINE,
                                THESIS_LAPTOP)}


DEVICES = _registry()


def get_device(device) -> Device:
    """A `Device` from its CLI name (or the device itself)."""
    if isinstance(device, Device):
        return device
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return DEVICES[device]
