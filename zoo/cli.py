"""The ``zoo`` command: LightningCLI in subclass mode over every zoo model and datamodule.

    zoo fit --config configs/wgan_gp/grid25.yaml [--trainer.max_steps 100 ...]
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from callbacks.divergence import DivergenceGuard
from datamodules.base import ZooDataModule
from zoo.base import GenerativeModel
from zoo.checkpoints import read_checkpoint


class ZooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # the data decides the shapes and value range the networks are built for
        parser.link_arguments("data.data_shape", "model.init_args.data_shape", apply_on="instantiate")
        parser.link_arguments("data.value_range", "model.init_args.value_range", apply_on="instantiate")
        # always on in `zoo fit` (a config or the command line tunes it; max_abs_parameter: null turns it off)
        parser.add_lightning_class_args(DivergenceGuard, "divergence_guard")
        parser.add_argument(
            "--allow_changed", type=str | None, default=None,
            help="With --ckpt_path: comma-separated model init arguments that may differ from the checkpoint's "
                 "(e.g. generator_optimizer,critic_optimizer to fine-tune with another learning rate). Budgets "
                 "(max_generator_steps, max_outer_steps) always take this run's value.")

    def _parse_ckpt_path(self) -> None:
        # Lightning's version replaces the model's config with the checkpoint's saved hyper-parameters, class
        # included, so the command line is silently ignored on resume. Here the command line builds the model and
        # GenerativeModel.check_resumable compares it with the checkpoint when it loads. Only read the file now,
        # so a missing, corrupt or foreign one fails before any data is loaded.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path not in (None, "last", "best", "hpc", "registry"):
            read_checkpoint(ckpt_path)

    def before_fit(self) -> None:
        allowed = {name.strip() for name in (self.config["fit"].get("allow_changed") or "").split(",")} - {""}
        known = {name for name in self.model.hparams if not name.startswith("_")}
        if allowed - known:
            raise ValueError(f"--allow_changed names {sorted(allowed - known)}, which are not init arguments of "
                             f"{type(self.model).__name__}; they are: {', '.join(sorted(known))}")
        self.model.allowed_resume_changes = frozenset(allowed)


def config_with_callback_args(config: str | Path, directory: str | Path, class_path: str, **init_args) -> Path:
    """A copy of ``config`` in ``directory`` whose ``class_path`` callbacks have ``init_args`` updated (for
    scripted runs that change, say, the Evaluation's sample counts but nothing else)."""
    import yaml

    content = yaml.safe_load(Path(config).read_text())
    for callback in content["trainer"]["callbacks"]:
        if callback["class_path"] == class_path:
            callback["init_args"].update(init_args)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / Path(config).name
    path.write_text(yaml.safe_dump(content))
    return path


def run_cli(args: list[str] | None = None, run: bool = True) -> ZooCLI:
    """Parse ``args`` (default: the command line), run the subcommand, return the CLI (model, trainer, ...).
    ``run=False`` only builds them (``args`` then holds no subcommand)."""
    import datamodules  # noqa: F401  registers the datamodules as subclasses
    import zoo.models  # noqa: F401  registers the models

    return ZooCLI(GenerativeModel, ZooDataModule, subclass_mode_model=True, subclass_mode_data=True,
                  save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                  args=args, run=run)


def main() -> None:
    """The ``zoo`` console script (returns nothing, so the exit status is 0 on success)."""
    run_cli()


if __name__ == "__main__":
    main()
