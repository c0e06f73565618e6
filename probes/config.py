"""One way for config dataclasses to become JSON and come back (checkpoints store configs as dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields


def known_fields(cls, values: Mapping) -> dict:
    """The entries of ``values`` named after a field of the dataclass ``cls``; the others are left out."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


class DictConfig:
    """Mixin for (frozen) config dataclasses: ``to_dict`` / ``from_dict`` refusing unknown keys.

    Subclasses set ``config_name`` (used in messages) and ``config_error`` (the
    exception raised for unknown keys), or ``ignore_unknown = True`` to leave unknown keys out.
    """

    config_name = "config"
    config_error: type[Exception] = ValueError
    ignore_unknown = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        if cls.ignore_unknown:
            return cls(**cls._decode(known_fields(cls, values)))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise cls.config_error(f"unknown {cls.config_name} config keys {unknown}; known: {sorted(known)}")
        return cls(**cls._decode(dict(values)))

    @classmethod
    def _decode(cls, values: dict) -> dict:
        """Turn JSON types back into field types (lists into tuples, ...); identity by default."""
        return values
