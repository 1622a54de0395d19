"""Units: FMI unit definitions (BaseUnit exponents, factor, offset) and conversions between them.

A value ``v`` in a unit with BaseUnit ``factor`` and ``offset`` is ``factor * v + offset`` in SI
base units. Two units convert into each other when their base-unit exponents are equal.
Unit strings that an FMU declares without a definition are interpreted with pint.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

BASE_UNITS = ("kg", "m", "s", "A", "K", "mol", "cd", "rad")
_PINT_TO_FMI = {"kilogram": "kg", "meter": "m", "second": "s", "ampere": "A", "kelvin": "K",
                "mole": "mol", "candela": "cd", "radian": "rad"}


@dataclass(frozen=True)
class UnitDefinition:
    """One unit as FMI 2.0 defines it (``<Unit><BaseUnit .../></Unit>``)."""

    name: str
    exponents: tuple[int, ...]  # in the order of BASE_UNITS
    factor: float = 1.0
    offset: float = 0.0


@cache
def _registry():
    import pint  # imported on first use: loading its registry takes ~0.5 s

    return pint.UnitRegistry()


@cache
def define(unit: str) -> UnitDefinition | None:
    """The FMI definition of a unit string such as ``mV``, ``mmHg`` or ``uA/cm**2``.

    Returns None when the string is not a unit pint knows.
    """
    import pint

    if unit in ("", "1", "-"):
        return UnitDefinition(unit, (0,) * len(BASE_UNITS))
    registry = _registry()
    try:
        quantity = registry.Quantity(unit)
        base = quantity.to_base_units()
        zero = registry.Quantity(0.0, unit).to_base_units().magnitude
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, AssertionError):
        return None
    exponents = dict.fromkeys(BASE_UNITS, 0)
    for name, power in base._units.items():
        if name not in _PINT_TO_FMI or float(power) != int(power):
            return None
        exponents[_PINT_TO_FMI[name]] = int(power)
    factor = float(base.magnitude) - float(zero)
    return UnitDefinition(unit, tuple(exponents[b] for b in BASE_UNITS), factor, float(zero))


def from_fmpy(unit) -> UnitDefinition:
    """Convert fmpy's ``Unit`` (from ``modelDescription.unitDefinitions``)."""
    base = unit.baseUnit
    if base is None:
        return define(unit.name) or UnitDefinition(unit.name, (0,) * len(BASE_UNITS))
    exponents = tuple(int(getattr(base, b, 0) or 0) for b in BASE_UNITS)
    return UnitDefinition(unit.name, exponents, float(base.factor or 1.0),
                          float(base.offset or 0.0))


def conversion(source: UnitDefinition | None, target: UnitDefinition | None
               ) -> tuple[float, float] | None:
    """``(scale, shift)`` with ``target_value = scale * source_value + shift``.

    None when the two units measure different quantities. A missing unit on either side
    is taken as "the same unit" (an FMU that declares no unit makes no claim).
    """
    if source is None or target is None or source.name == target.name:
        return (1.0, 0.0)
    if source.exponents != target.exponents:
        return None
    scale = source.factor / target.factor
    shift = (source.offset - target.offset) / target.factor
    return (scale, shift)
