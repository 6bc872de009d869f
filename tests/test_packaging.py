"""genzoo installs under one namespace, `genzoo`, and coexists with a user's project that has its own
`callbacks`, `datamodules` and `benchmarks` (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"zoo": "genzoo", "callbacks": "genzoo.callbacks", "datamodules": "genzoo.datamodules"}


def test_every_package_folder_is_installed_under_genzoo():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    folders = {FOLDERS[init.parent.relative_to(REPO).parts[0]]
               + "".join(f".{part}" for part in init.parent.relative_to(REPO).parts[1:])
               for folder in FOLDERS for init in (REPO / folder).rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders, "pyproject.toml's packages must list every package folder"


USER_PROJECT = {
    "callbacks.py": """
        import lightning as L

        class CountBatches(L.Callback):
            def __init__(self):
                self.count = 0

            def on_train_batch_end(self, *args):
                self.count += 1
    """,
    "datamodules/__init__.py": "OWN = 'the user project datamodules'\n",
    "benchmarks/__init__.py": "OWN = 'the user project benchmarks'\n",
    "train.py": """
        import json, sys
        import lightning as L
        import torch

        from callbacks import CountBatches  # the project's own, next to ours
        from datamodules import OWN
        from genzoo.callbacks import Evaluation, StepCheckpoint
        from genzoo.datamodules import Digits
        from genzoo.wgan import WGANGP

        assert OWN == "the user project datamodules"
        data = Digits(batch_size=32)
        model = WGANGP(data.data_shape, data.value_range, latent_dim=8, max_generator_steps=2)
        counter = CountBatches()
        evaluation = Evaluation(extractor="pixels", metrics=["fid"], n_samples=64, n_reference=64,
                                every_n_epochs=None, cache_dir=None)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir="run", callbacks=[counter, evaluation,
                            StepCheckpoint(dirpath="run/checkpoints", save_last=True, save_top_k=0)])
        trainer.fit(model, data)
        reloaded = WGANGP.load_from_checkpoint("run/checkpoints/last.ckpt", weights_only=True)
        old = WGANGP.load_from_checkpoint(sys.argv[1], weights_only=True)  # class paths under the old names
        print(json.dumps({"batches": counter.count, "fid": evaluation.history[-1]["fid"],
                          "sample": list(reloaded.sample(3).shape), "old_sample": list(old.sample(2).shape),
                          "old_generator": type(old.generator).__module__,
                          "legacy_names_left": sorted(m for m in sys.modules if m.split(".")[0] == "zoo")}))
    """,
}


def test_a_user_project_with_its_own_callbacks_and_datamodules_uses_genzoo(tmp_path):
    for name, source in USER_PROJECT.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # genzoo as installed
    result = subprocess.run([sys.executable, "train.py", str(REPO / "tests/data/checkpoints_v0/wgan_gp.ckpt")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["batches"] == 10 and report["fid"] > 0  # 2 generator steps, each after 5 critic batches
    assert report["sample"] == [3, 1, 8, 8] and report["old_sample"] == [2, 2]
    assert report["old_generator"] == "genzoo.nets.mlp" and report["legacy_names_left"] == []


OLD_STYLE_CONFIG = """
model:
  class_path: zoo.wgan.WGANGP
  init_args:
    latent_dim: 2
    max_generator_steps: 2
    generator: {class_path: zoo.nets.MLPGenerator, init_args: {width: 8}}
data:
  class_path: datamodules.Grid25
  init_args: {batch_size: 32, num_samples: 256}
trainer:
  logger: false
  enable_progress_bar: false
  callbacks:
    - class_path: callbacks.StepCheckpoint
      init_args: {save_last: true, save_top_k: 0}
"""


def test_a_config_with_the_old_class_paths_still_runs(tmp_path):
    (tmp_path / "old.yaml").write_text(OLD_STYLE_CONFIG)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "genzoo.cli", "fit", "--config", "old.yaml",
                             "--trainer.default_root_dir", "run"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
