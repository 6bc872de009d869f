"""``benchmarks.gpu_check``: a clear exit without a GPU, and its CPU smoke mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.test_cli import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_without_a_gpu_it_exits_with_a_clear_message():
    run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 2
    assert "needs a CUDA GPU and found none" in run.stderr and "--device cpu" in run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"error": "no CUDA GPU"}


def test_quick_cpu_run_reports_flatgan_tangents_in_fp32_under_autocast():
    from benchmarks.gpu_check import main

    result = main(["--device", "cpu", "--quick", "--sections", "flatgan_autocast"])
    bf16 = result["flatgan_autocast"]["bf16"]
    assert bf16["tangents_dtype"] == "float32" and bf16["tangents_rel_error"] == 0.0 and bf16["finite"]
    assert set(result["seconds"]) == {"flatgan_autocast", "total"}
