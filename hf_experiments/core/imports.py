"""User code named in a config (`package.module:function` or `file.py:function`): batch functions, grabs and
sweep axes. Config values like these execute code, so validation only *reads* them (`check_object`: the file
parses and defines the name; nothing runs, also under a sweep's `--dry_run`), and `import_object` runs them when
the run starts. `call_with_accepted` calls a function with the keyword arguments it accepts.

Live objects (a function or class defined in a notebook or a script's `__main__`, which no other process can
import) are named ``live:<module>.<qualname>#<code hash>`` after `register_live`; they resolve only in this
process.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LIVE_PREFIX = "live:"
_LIVE: dict[str, Any] = {}


def _code_text(code: Any) -> str:
    """A code object's behaviour as text: bytecode, names, constants (nested code recursively), without file
    names, line numbers or set constants (whose order follows PYTHONHASHSEED)."""
    consts = [c for c in code.co_consts if not inspect.iscode(c) and not isinstance(c, frozenset)]
    nested = [_code_text(c) for c in code.co_consts if inspect.iscode(c)]
    return f"{code.co_code.hex()}|{code.co_names}|{consts!r}|{nested}"


def fingerprint(obj: Any) -> str:
    """What makes a function or class behave as it does: its code (a class: every method's), default
    arguments and the values its closure captured. The same in a notebook and in a script, across kernel
    restarts; different for two lambdas on one line or two closures of one factory."""
    parts = [getattr(obj, "__qualname__", type(obj).__name__)]
    if inspect.isclass(obj):
        parts.append(str([b.__qualname__ for b in obj.__bases__]))
        for name, value in sorted(vars(obj).items()):
            code = getattr(getattr(value, "__func__", value), "__code__", None)
            if code is not None:
                parts.append(f"{name}:{_code_text(code)}")
    code = getattr(obj, "__code__", None)
    if code is not None:
        parts.append(_code_text(code))
        parts.append(repr(getattr(obj, "__defaults__", None)) + repr(getattr(obj, "__kwdefaults__", None)))
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                parts.append(repr(cell.cell_contents))
            except ValueError:  # an empty cell
                parts.append("<empty>")
    return "|".join(parts)


def register_live(obj: Any) -> str:
    """Name a live object for configs of this process: ``live:<module>.<qualname>#<hash of its fingerprint>``.

    The hash tells two lambdas (or two closures of one factory) apart and records which version of a function a
    run used (its config holds the name); the same code gives the same name, so a rerun cell finds its
    finished jobs."""
    tag = hashlib.sha256(fingerprint(obj).encode()).hexdigest()[:10]
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    spec = f"{LIVE_PREFIX}{name}#{tag}"
    _LIVE[spec] = obj
    return spec


def importable_spec(obj: Any) -> str | None:
    """``module:qualname`` when another process can import `obj` by that name (a top-level function or class
    of an importable module), else None (notebook cells, `__main__`, lambdas, nested functions)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        return None
    try:
        found = getattr(importlib.import_module(module), qualname, None)
    except Exception:
        return None
    return f"{module}:{qualname}" if found is obj else None


def _live_missing(spec: str, what: str) -> ValueError:
    return ValueError(
        f"{what}={spec!r} names a live object (defined in a notebook or a script's __main__) that this process "
        "does not have; run the sweep in-process (engine='local', no devices) or move the function into an "
        "importable .py file and name it 'package.module:name' or 'file.py:name'"
    )


def _split(spec: str, what: str) -> tuple[str, str]:
    if ":" in spec:
        module_name, attr = spec.rsplit(":", 1)
    elif "." in spec:
        module_name, attr = spec.rsplit(".", 1)
    else:
        raise ValueError(f"{what}={spec!r} is invalid; expected 'package.module:name' or 'file.py:name'")
    return module_name, attr


def _module_source(module_name: str) -> Path | None:
    """The source file of a module, found on `sys.path` without importing it or its parents (None: no Python
    source to read, e.g. a compiled or built-in module). ValueError if it does not exist."""
    if module_name in sys.modules:
        origin = getattr(sys.modules[module_name], "__file__", None)
        return Path(origin) if origin and origin.endswith(".py") else None
    path: list[str] | None = None
    spec = None
    for depth, part in enumerate(module_name.split(".")):
        name = ".".join(module_name.split(".")[: depth + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            if depth == 0 and importlib.util.find_spec(part) is not None:  # built-in / frozen top-level module
                return None
            raise ModuleNotFoundError(f"No module named {name!r}")
        path = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _source_file(module_name: str) -> Path | None:
    """A `file.py` path as it is, else the module's source found on `sys.path` (`_module_source`)."""
    return Path(module_name) if module_name.endswith(".py") else _module_source(module_name)


def _defines(source: Path, attr: str) -> bool:
    """Whether a module's source defines `attr` at top level (or may: `import *` or a module `__getattr__`)."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return True
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return attr in names or "__getattr__" in names


def check_object(spec: str, what: str = "function") -> None:
    """`spec` names an existing module or file that defines the name, read from its source without running it.
    ValueError (one line) if not: a missing module or file, a syntax error, or no such name."""
    if spec.startswith(LIVE_PREFIX):
        if spec not in _LIVE:
            raise _live_missing(spec, what)
        return
    module_name, attr = _split(spec, what)
    try:
        source = _source_file(module_name)
        if module_name.endswith(".py") and not source.is_file():
            raise FileNotFoundError(module_name)
        if source is not None and not _defines(source, attr):
            raise AttributeError(f"{source} defines no {attr!r}")
    except SyntaxError as e:
        raise ValueError(
            f"{what}={spec!r}: {e.filename or module_name} has a syntax error at line {e.lineno}: {e.msg}"
        ) from None
    except (ImportError, FileNotFoundError, AttributeError, OSError) as e:
        raise ValueError(
            f"{what}={spec!r} could not be found ({type(e).__name__}: {e}); expected an importable "
            "'package.module:name' or an existing 'file.py:name'"
        ) from None


def accepted_keywords(spec: str) -> set[str] | None:
    """The keyword names a function or class named by `spec` accepts, read from its source without running it
    (a live object: from its signature); None when any keyword goes (``**kwargs``) or it cannot be told (a
    class that inherits its ``__init__``, a compiled module)."""
    if spec.startswith(LIVE_PREFIX):
        obj = _LIVE.get(spec)
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    module_name, attr = _split(spec, "model_class")
    try:
        source = _source_file(module_name)
    except (ImportError, OSError):
        return None
    if source is None or not source.is_file():
        return None
    tree = ast.parse(source.read_text(encoding="utf-8"))
    node = next((n for n in tree.body if getattr(n, "name", None) == attr), None)
    if isinstance(node, ast.ClassDef):
        node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.args.kwarg is not None:
        return None
    args = node.args
    return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)} - {"self"}


def import_object(spec: str, what: str = "function") -> Any:
    """``pkg.mod:name``, ``pkg.mod.name`` or ``path/file.py:name`` -> the object (its module runs now).
    ValueError if not found."""
    check_object(spec, what)
    if spec.startswith(LIVE_PREFIX):
        return _LIVE[spec]
    module_name, attr = _split(spec, what)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            mod_spec = importlib.util.spec_from_file_location(f"_hfe_user_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, FileNotFoundError, AttributeError) as e:
        raise ValueError(
            f"{what}={spec!r} could not be imported ({type(e).__name__}: {e}); expected an importable "
            "'package.module:name' or an existing 'file.py:name'"
        ) from None


def call_with_accepted(fn: Callable[..., Any], available: Mapping[str, Any]) -> Any:
    """Call `fn` with the entries of `available` it accepts by name (all of them if it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})
