"""A fingerprint of the code behind a result, so that a cache knows when the code changed.

`code_fingerprint(train, model)` hashes the package version and the source of every function and class that
`train` and the model's classes use, followed through their global names (the notebook's own functions, e.g. a
loss, and the package's), but not through other libraries (torch, numpy): editing the loss a training closure
calls changes the fingerprint, re-running the same code does not.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import types
from importlib import metadata


def _package_version() -> str:
    try:
        return metadata.version("aria-utils")
    except metadata.PackageNotFoundError:
        return "unknown"


def _ours(name: str) -> bool:
    """Code of the notebook (`__main__`) or of this package: the code a fingerprint follows."""
    return name == "__main__" or name.split(".")[0] == "aria_utils"


def _code_text(code: types.CodeType) -> str:
    """Bytecode, names and constants of `code` and the code nested in it (when no source is available)."""
    parts = [code.co_code.hex(), repr(code.co_names)]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            parts.append(_code_text(c))
        elif isinstance(c, frozenset):
            parts.append(repr(sorted(map(repr, c))))  # a set's order changes with the hash seed
        else:
            parts.append(repr(c))
    return "|".join(parts)


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names used by `code` and by the functions nested in it."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out


def code_fingerprint(*objects: object) -> str:
    """A 12-hex-digit hash of the code behind `objects` (functions, classes, nn.Module instances)."""
    h = hashlib.sha256(_package_version().encode())
    seen: set[int] = set()

    def visit(obj: object, given: bool = False) -> None:
        obj = getattr(obj, "__func__", obj)  # bound and class methods
        if isinstance(obj, functools.partial):
            visit(obj.func)
            return
        if isinstance(obj, property):
            visit(obj.fget)
            return
        if id(obj) in seen:
            return
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (given or _ours(obj.__module__)):  # the objects given are hashed wherever they live
                return
        elif hasattr(obj, "modules") and callable(obj.modules):  # an nn.Module: the classes it is built from
            seen.add(id(obj))
            for m in obj.modules():
                visit(type(m))
            return
        else:
            return
        seen.add(id(obj))
        if inspect.isclass(obj):
            h.update(f"class {obj.__module__}.{obj.__qualname__}".encode())
            for member in vars(obj).values():
                visit(member.__func__ if isinstance(member, (staticmethod, classmethod)) else member)
            for base in obj.__mro__[1:]:
                visit(base)
            return
        try:
            h.update(inspect.getsource(obj).encode())
        except (OSError, TypeError):
            h.update(_code_text(obj.__code__).encode())
        for cell in obj.__closure__ or ():
            try:
                visit(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        names = sorted(_names(obj.__code__))
        for name in names:
            value = obj.__globals__.get(name)
            if isinstance(value, types.ModuleType):
                if _ours(value.__name__):
                    for attr in names:
                        visit(getattr(value, attr, None))
            elif value is not None:
                visit(value)

    for obj in objects:
        visit(obj, given=True)
    return h.hexdigest()[:12]
