"""The ``zoo`` verbs that are not LightningCLI subcommands, each a small module with ``main(argv) -> dict``:

- ``zoo evaluate`` (:mod:`genzoo.commands.evaluate`): metrics of a checkpoint or of any samples (a folder of
  images, a ``.pt``/``.npz`` tensor file) against a datamodule split or a folder of images;
- ``zoo sample`` (:mod:`genzoo.commands.sample`): samples of a checkpoint as PNGs, a grid or a tensor file;
- ``zoo train-extractor`` (:mod:`genzoo.callbacks.extractors.train`): trains the ``classifier`` feature extractor.

:func:`run_verb` gives them one error style: a user error (a missing or unreadable file, a bad shape or
setting) is one line ``zoo <verb>: error: <message>`` on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

#: verb -> (module with ``main(argv)``, one-line description for ``zoo --help``)
VERBS: dict[str, tuple[str, str]] = {
    "evaluate": ("genzoo.commands.evaluate", "metrics of a checkpoint or of any samples (folder, .pt, .npz)"),
    "sample": ("genzoo.commands.sample", "write a checkpoint's samples as PNGs, a grid or a tensor file"),
    "train-extractor": ("genzoo.callbacks.extractors.train", "train the classifier feature extractor on a dataset"),
}

#: what a user can cause (bad paths, files, shapes, settings); anything else is a bug and keeps its traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def prog(verb: str) -> str:
    return f"zoo {verb}"


def verb_main(verb: str) -> Callable[[list[str] | None], dict]:
    return importlib.import_module(VERBS[verb][0]).main


def run_verb(verb: str, argv: list[str]) -> int:
    """Run ``zoo <verb> argv``; a user error is one line on stderr and exit status 2."""
    try:
        verb_main(verb)(argv)
    except USER_ERRORS as error:
        message = " ".join(str(error).split("\n")) or type(error).__name__
        print(f"{prog(verb)}: error: {message}", file=sys.stderr)
        return 2
    return 0


def verbs_help() -> str:
    width = max(len(v) for v in VERBS)
    lines = [f"  {verb:<{width}}  {description}" for verb, (_, description) in VERBS.items()]
    return "genzoo's own verbs (zoo <verb> --help for their options):\n" + "\n".join(lines)


def load_model(path: str, class_path: str | None = None, device: str = "cpu"):
    """The model of a ``zoo fit`` checkpoint, in eval mode; its class is recorded in the checkpoint (``class_path``
    overrides it for checkpoints written before genzoo recorded it)."""
    from genzoo.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(path)  # clear errors for missing, corrupt and foreign files
    class_path = class_path or checkpoint["zoo"].get("class_path")
    if not class_path:
        raise ValueError(f"{path} does not record its model class (an older checkpoint): pass --model, "
                         f"e.g. --model genzoo.wgan.WGANGP")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{path}: model class {class_path} cannot be imported ({error}); pass --model") from error
    return cls.load_from_checkpoint(path, map_location=device).eval()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
