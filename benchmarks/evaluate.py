"""``python -m benchmarks.evaluate`` is ``zoo evaluate`` (:mod:`genzoo.commands.evaluate`), kept for old scripts.

    zoo evaluate --ckpt runs/wgan_gp/fashion_mnist/checkpoints/last.ckpt --data fashion_mnist --data_dir data \\
        --extractor classifier:fashion_mnist --n 10000
"""

from __future__ import annotations

import sys

from genzoo.commands import load_model, run_verb
from genzoo.commands.evaluate import main

__all__ = ["load_model", "main"]

if __name__ == "__main__":
    sys.exit(run_verb("evaluate", sys.argv[1:]))
