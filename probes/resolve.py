"""One grammar for objects named on the command line: ``package.module:attribute[.attribute][=arg]``, or
``path/to/file.py:attribute[.attribute][=arg]`` for a Python file that is not on the import path.

Backbones, generators, networks and labellers from outside faceprobe come in this way, imported
when the command runs (never at faceprobe's import). :func:`parse_object_spec` checks the form,
:func:`resolve_object` imports the module (or runs the file once, as a module of its own) and walks
the attribute path; each error names the spec.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import FaceprobeError

OBJECT_SPEC_FORMS = "'package.module:attribute[=arg]' or 'path/to/file.py:attribute[=arg]'"
_FILE_SPEC = re.compile(r"^(?P<path>.+?\.py):(?P<rest>.*)$", re.DOTALL)


class ObjectSpecError(FaceprobeError, ValueError):
    """A ``module:attribute[=arg]`` spec that is malformed, cannot be imported or names nothing."""


@dataclass(frozen=True)
class ObjectSpec:
    """A parsed ``module:attribute[=arg]``: ``arg`` is None when no ``=`` was given.

    For the file form, ``path`` is the ``.py`` file and ``module`` the same text.
    """

    text: str
    module: str
    attribute: str
    arg: str | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        """The attribute's last part (a readable name for tables)."""
        return self.attribute.rsplit(".", 1)[-1]


def is_object_spec(text: str) -> bool:
    """Whether ``text`` has the ``module:attribute`` form (a registry name has no colon)."""
    return isinstance(text, str) and ":" in text


def parse_object_spec(text: str, error: type[FaceprobeError] = ObjectSpecError,
                      what: str = "object spec") -> ObjectSpec:
    """Parse ``package.module:attribute[.attribute][=arg]`` or ``path/to/file.py:attribute[=arg]``; raise
    ``error`` naming ``text`` if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise error(f"{what} must be a non-empty string, got {text!r}")
    text = text.strip()
    file_form = _FILE_SPEC.match(text)
    if file_form:
        path, (attribute, eq, arg) = file_form["path"], file_form["rest"].partition("=")
        module = path
        parts_ok = bool(attribute) and all(p.isidentifier() for p in attribute.split("."))
    else:
        path = None
        target, eq, arg = text.partition("=")
        module, _, attribute = target.partition(":")
        parts_ok = module and attribute and all(p.isidentifier() for p in module.split(".")) \
            and all(p.isidentifier() for p in attribute.split("."))
    if not parts_ok:
        raise error(f"{what} {text!r} is not {OBJECT_SPEC_FORMS}")
    return ObjectSpec(text, module, attribute, arg if eq else None, path)


def _run_file(spec: ObjectSpec, error: type[FaceprobeError], what: str):
    """The module of ``spec.path``, run once per file version (cached in ``sys.modules`` under a private
    name); its folder is on the import path while it runs, as for a script."""
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise error(f"{what} {spec.text!r}: file {path} does not exist") from FileNotFoundError(str(path))
    resolved = path.resolve()
    stat = resolved.stat()
    key = hashlib.sha256(f"{resolved}\0{stat.st_mtime_ns}\0{stat.st_size}".encode()).hexdigest()[:12]
    name = f"faceprobe_file_{re.sub(r'[^0-9A-Za-z_]', '_', resolved.stem)}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise error(f"{what} {spec.text!r}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
    folder = str(resolved.parent)
    sys.path.insert(0, folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # any failure of the user's file is reported with its spec
        del sys.modules[name]
        raise error(f"{what} {spec.text!r}: running {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def resolve_object(spec: ObjectSpec | str, error: type[FaceprobeError] = ObjectSpecError,
                   what: str = "object spec") -> object:
    """Import ``spec.module`` (or run ``spec.path``) and return ``spec.attribute`` (dotted paths walk nested
    attributes)."""
    if isinstance(spec, str):
        spec = parse_object_spec(spec, error, what)
    if spec.path is not None:
        obj = _run_file(spec, error, what)
    else:
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
