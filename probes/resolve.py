"""One grammar for objects named on the command line: ``package.module:attribute[.attribute][=arg]``.

Backbones, generators, networks and labellers from outside faceprobe come in this way, imported
when the command runs (never at faceprobe's import). :func:`parse_object_spec` checks the form,
:func:`resolve_object` imports the module and walks the attribute path; each error names the spec.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .errors import FaceprobeError


class ObjectSpecError(FaceprobeError, ValueError):
    """A ``module:attribute[=arg]`` spec that is malformed, cannot be imported or names nothing."""


@dataclass(frozen=True)
class ObjectSpec:
    """A parsed ``module:attribute[=arg]``: ``arg`` is None when no ``=`` was given."""

    text: str
    module: str
    attribute: str
    arg: str | None = None

    @property
    def name(self) -> str:
        """The attribute's last part (a readable name for tables)."""
        return self.attribute.rsplit(".", 1)[-1]


def is_object_spec(text: str) -> bool:
    """Whether ``text`` has the ``module:attribute`` form (a registry name has no colon)."""
    return isinstance(text, str) and ":" in text


def parse_object_spec(text: str, error: type[FaceprobeError] = ObjectSpecError,
                      what: str = "object spec") -> ObjectSpec:
    """Parse ``package.module:attribute[.attribute][=arg]``; raise ``error`` naming ``text`` if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise error(f"{what} must be a non-empty string, got {text!r}")
    text = text.strip()
    target, eq, arg = text.partition("=")
    module, _, attribute = target.partition(":")
    parts_ok = module and attribute and all(p.isidentifier() for p in module.split(".")) \
        and all(p.isidentifier() for p in attribute.split("."))
    if not parts_ok:
        raise error(f"{what} {text!r} is not 'package.module:attribute[=arg]'")
    return ObjectSpec(text, module, attribute, arg if eq else None)


def resolve_object(spec: ObjectSpec | str, error: type[FaceprobeError] = ObjectSpecError,
                   what: str = "object spec") -> object:
    """Import ``spec.module`` and return ``spec.attribute`` (dotted paths walk nested attributes)."""
    if isinstance(spec, str):
        spec = parse_object_spec(spec, error, what)
    try:
        obj = importlib.import_module(spec.module)
    except ImportError as exc:
        raise error(f"{what} {spec.text!r}: cannot import module {spec.module!r} ({exc})") from exc
    try:
        for part in spec.attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise error(f"{what} {spec.text!r}: module {spec.module!r} has no attribute {spec.attribute!r}") from None
    return obj
