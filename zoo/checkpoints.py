"""Files the zoo writes whole or not at all, reads with errors that name them, and the rules for resuming a run.

Torch only (no Lightning): model checkpoints, the OT solver's state, the reference-statistics cache and the
classifier extractors all go through :func:`atomic_save` and :func:`load_plain`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import inspect
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


# ---- writing -------------------------------------------------------------------------------------------------
def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in ``path``'s own directory, fsync, then ``os.replace``: ``path`` holds
    the old file or the new one, never a partial one, even when the disk fills or the process dies mid-write.

    The temporary file must be on the destination's filesystem: a rename across filesystems (Lightning's
    default writes to ``$TMPDIR`` first) degrades to a copy over the destination, which is not atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)  # the rename itself survives a power cut
    return path


def _fsync_directory(directory: Path) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform or filesystem; the data itself is already synced
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


# ---- reading -------------------------------------------------------------------------------------------------
def load_plain(path: str | Path, what: str = "file") -> Any:
    """``torch.load(weights_only=True)`` on CPU (no pickled code runs). Errors name the file and the problem:
    FileNotFoundError when missing; ValueError "refused" for pickled Python objects, "not readable (truncated or
    corrupt?)" for anything else torch cannot read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():  # torch's weights-only unpickler met a class or function
            raise ValueError(f"{what} {path} refused: not a plain-tensor file (it holds pickled Python objects, "
                             "which would run code when loaded; load it with torch.load(weights_only=False) "
                             "only if you trust where it came from)") from error
        raise _unreadable(path, what, "its bytes do not unpickle as a torch.save file") from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise _unreadable(path, what, error) from error


def _unreadable(path: Path, what: str, error: Exception | str) -> ValueError:
    lines = [line for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    return ValueError(f"{what} {path} is not readable (truncated or corrupt? {path.stat().st_size} bytes): "
                      f"{message}")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A genzoo Lightning checkpoint, or an error naming the file: missing, refused, truncated/corrupt, not a
    Lightning checkpoint, or not written by a genzoo model."""
    checkpoint = load_plain(path, "checkpoint")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not a readable Lightning checkpoint (no state_dict)")
    require_zoo_section(checkpoint, f"checkpoint {path}")
    return checkpoint


def require_zoo_section(checkpoint: dict[str, Any], what: str = "this checkpoint") -> None:
    if "zoo" not in checkpoint:
        raise ValueError(f"{what} was not written by a genzoo model (no 'zoo' section)")


# ---- hyper-parameters in a safe form ---------------------------------------------------------------------------
#: what Lightning's ``load_from_checkpoint`` calls to build a model from class-path configs (jsonargparse)
INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


def plain_config(value: Any) -> Any:
    """``value`` as data a ``weights_only`` load accepts and the CLI's parser can instantiate: a
    ``functools.partial`` of a class becomes ``{class_path, init_args}``, a class or function its import path,
    tuples lists, a dtype or device its name. Raises TypeError for anything else (an object has no such form)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_config(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, functools.partial) and not value.args:
        return {"class_path": import_path(value.func), "init_args": plain_config(dict(value.keywords))}
    if isinstance(value, type) or inspect.isfunction(value):
        return import_path(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value).removeprefix("torch.")
    raise TypeError(f"{type(value).__name__} has no plain form (pass a class, functools.partial(cls, **kwargs) "
                    "or a class-path dict instead of an object)")


def import_path(obj: Any) -> str:
    path = f"{obj.__module__}.{obj.__qualname__}"
    if "<locals>" in path:
        raise TypeError(f"{path} is defined inside a function and cannot be imported when the checkpoint loads")
    return path


# ---- module names before the one installed namespace ------------------------------------------------------
#: top-level names genzoo's modules had before it installed under ``genzoo`` alone (checkpoints keep class paths)
LEGACY_MODULES = {"zoo": "genzoo", "callbacks": "genzoo.callbacks", "datamodules": "genzoo.datamodules"}


def current_module_name(name: str) -> str:
    """``zoo.nets.mlp`` -> ``genzoo.nets.mlp``; other names unchanged."""
    head, dot, rest = name.partition(".")
    return LEGACY_MODULES[head] + dot + rest if head in LEGACY_MODULES else name


def upgrade_class_paths(value: Any) -> Any:
    """``value`` (hyper-parameters, nested configs) with every class path (a ``class_path`` entry, or a dotted
    string naming one of genzoo's old modules: a class given from Python) under the current module names."""
    if isinstance(value, str):
        return current_module_name(value) if "." in value else value
    if isinstance(value, dict):
        return {key: upgrade_class_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(upgrade_class_paths(item) for item in value)
    return value


class _LegacyModuleNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the old names to genzoo's modules (the same module objects). A top-level name another finder can
    import (a user's own ``callbacks`` or ``datamodules``) stays theirs."""

    def find_spec(self, name, path=None, target=None):
        head = name.partition(".")[0]
        if head not in LEGACY_MODULES:
            return None
        if "." not in name:
            ours = Path(importlib.import_module(LEGACY_MODULES[name]).__file__).parent
            others = (f.find_spec(name, None) for f in sys.meta_path if f is not self and hasattr(f, "find_spec"))
            if any(spec is not None and Path(spec.origin or "").parent != ours for spec in others):
                return None
        elif getattr(sys.modules.get(head), "__name__", None) != LEGACY_MODULES[head]:
            return None  # the top-level name is someone else's package
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(current_module_name(spec.name))

    def exec_module(self, module) -> None:
        pass


@contextlib.contextmanager
def legacy_module_names() -> Iterator[None]:
    """Inside, class paths written before the ``genzoo`` namespace import (``load_from_checkpoint`` of an old
    checkpoint); after, the old names are released again."""
    finder = _LegacyModuleNames()
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            # only the aliases (genzoo's modules under an old name): a user's own package imported meanwhile stays
            if name.partition(".")[0] in LEGACY_MODULES and sys.modules[name].__name__ != name:
                del sys.modules[name]


# ---- resuming ------------------------------------------------------------------------------------------------
def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted name: (saved value, current value)}`` for the init arguments that differ between a checkpoint's
    hyper-parameters and the model's, nested configs compared leaf by leaf (``generator.init_args.width``).

    Settings given from Python compare in their :func:`plain_config` form (a ``functools.partial`` as its class
    path and arguments). Lightning's bookkeeping (names starting with ``_``) and objects without a plain form are
    not compared (their shapes are still checked when the state dict loads)."""
    saved_leaves, current_leaves = _leaves(_plain_or_opaque(saved)), _leaves(_plain_or_opaque(current))
    opaque = {name for leaves in (saved_leaves, current_leaves) for name, value in leaves.items() if value is _OPAQUE}
    changes = {}
    for name in sorted(saved_leaves.keys() | current_leaves.keys()):
        old, new = saved_leaves.get(name, _MISSING), current_leaves.get(name, _MISSING)
        # an opaque setting hides its whole subtree (load_from_checkpoint rebuilds factories as jsonargparse's
        # wrapped partials, which have no plain form)
        if old == new or any(name == o or name.startswith(f"{o}.") for o in opaque):
            continue
        changes[name] = (old, new)
    return changes


def describe_change(name: str, change: tuple[Any, Any]) -> str:
    old, new = (("(absent)" if value is _MISSING else repr(value)) for value in change)
    return f"{name}: {old} in the checkpoint, {new} now"


def root_setting(name: str) -> str:
    """The init argument a dotted leaf belongs to (``generator_optimizer.init_args.lr`` → ``generator_optimizer``)."""
    return name.split(".", 1)[0]


_MISSING, _OPAQUE = object(), object()


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            if not prefix and str(key).startswith("_"):
                continue
            leaves.update(_leaves(item, f"{prefix}{key}."))
        return leaves
    return {prefix[:-1]: value}


def _plain_or_opaque(value: Any) -> Any:
    """:func:`plain_config`, with objects that have no plain form (anywhere inside) marked as not comparable."""
    if isinstance(value, dict):
        return {str(key): _plain_or_opaque(item) for key, item in value.items()}
    try:
        return plain_config(value)
    except TypeError:
        return _OPAQUE
