"""The ``zoo`` command: LightningCLI in subclass mode over every zoo model and datamodule.

    zoo fit --config configs/wgan_gp/grid25.yaml [--trainer.max_steps 100 ...]
    zoo evaluate | sample | train-extractor ...    (genzoo.commands)

Every subcommand reads ``configs/defaults.yaml`` (the settings all configs share) before ``--config``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from genzoo.base import GenerativeModel
from genzoo.callbacks.divergence import DivergenceGuard
from genzoo.callbacks.progress import RunProgressBar, RunSummary
from genzoo.callbacks.samples import SampleWriter
from genzoo.checkpoints import legacy_module_names, read_checkpoint
from genzoo.datamodules.base import ZooDataModule

#: ``--ckpt_path`` values that are not files (Lightning resolves them itself)
LIGHTNING_CKPT_NAMES = (None, "last", "best", "hpc", "registry")


class SaveConfigToRunDir(SaveConfigCallback):
    """``config.yaml`` of a fit in its run directory (``trainer.default_root_dir``) whatever the loggers
    (Lightning's goes to the first logger's directory, e.g. inside W&B's)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or stage != "fit":  # validate/test/predict leave the training run's config alone
            return
        if trainer.is_global_zero:
            run = Path(trainer.default_root_dir)
            run.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(run / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)
        self.already_saved = True


class ZooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # the data decides the shapes and value range the networks are built for
        parser.link_arguments("data.data_shape", "model.init_args.data_shape", apply_on="instantiate")
        parser.link_arguments("data.value_range", "model.init_args.value_range", apply_on="instantiate")
        # always on in `zoo fit` (a config or the command line tunes it; max_abs_parameter: null turns it off)
        parser.add_lightning_class_args(DivergenceGuard, "divergence_guard")
        parser.add_argument("--num_samples", type=int, default=64, help="zoo predict: how many samples to generate")
        parser.add_argument("--samples_dir", type=str | None, default=None,
                            help="zoo predict: where to write them (default: <the checkpoint's run>/predictions)")
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
        if ckpt_path not in LIGHTNING_CKPT_NAMES:
            read_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir or ".")
        if self.subcommand == "fit":
            if config.trainer.limit_val_batches is None:  # held-out losses during fit only when asked for
                config.trainer.limit_val_batches = 0
            run = choose_run_dir(root, config.get("ckpt_path"))
        else:  # validate, test, predict write (metrics, samples) into the checkpoint's run directory
            run = checkpoint_run_dir(config.get("ckpt_path")) or root
        config.trainer.default_root_dir = str(run)
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:  # loggers that write files write them into the run directory
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                init_args.save_dir = str(run)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        # a run-level bar in the model's steps (unless the bar is off), and a summary at the end of fit
        extra = [RunSummary()]
        has_bar = any(isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])])
        if config.get("enable_progress_bar") is not False and not has_bar:
            extra.append(RunProgressBar())
        return super()._instantiate_trainer(config, [*callbacks, *extra])

    def _run_subcommand(self, subcommand: str) -> None:
        # processes this run starts (DDP ranks re-running this command) write to the same run directory
        previous = os.environ.get(RUN_DIR_VARIABLE)
        os.environ[RUN_DIR_VARIABLE] = str(self.trainer.default_root_dir)
        try:
            super()._run_subcommand(subcommand)
        finally:
            if previous is None:
                os.environ.pop(RUN_DIR_VARIABLE, None)
            else:
                os.environ[RUN_DIR_VARIABLE] = previous

    def before_predict(self) -> None:
        config = self.config["predict"]
        if not config.get("ckpt_path"):
            raise ValueError("zoo predict generates samples from a trained model: give --ckpt_path "
                             "runs/<method>/<dataset>/checkpoints/last.ckpt")
        if config.num_samples < 1:
            raise ValueError(f"--num_samples must be >= 1, got {config.num_samples}")
        self.datamodule.predict_samples = config.num_samples
        self.trainer.callbacks.append(SampleWriter(config.samples_dir or Path(self.trainer.default_root_dir)
                                                   / "predictions"))

    def before_fit(self) -> None:
        allowed = {name.strip() for name in (self.config["fit"].get("allow_changed") or "").split(",")} - {""}
        known = {name for name in self.model.hparams if not name.startswith("_")}
        if allowed - known:
            raise ValueError(f"--allow_changed names {sorted(allowed - known)}, which are not init arguments of "
                             f"{type(self.model).__name__}; they are: {', '.join(sorted(known))}")
        self.model.allowed_resume_changes = frozenset(allowed)


def choose_run_dir(root: Path, ckpt_path: str | None = None) -> Path:
    """Where a ``zoo fit`` run writes: ``root`` (the config's ``trainer.default_root_dir``) for the first run,
    ``root-1``, ``root-2``, ... for reruns, so no run overwrites another; a resume from ``<dir>/checkpoints/*.ckpt``
    of one of these continues in ``<dir>``. DDP ranks started by Lightning inherit rank 0's choice."""
    inherited = os.environ.get(RUN_DIR_VARIABLE)
    if inherited:
        return Path(inherited)
    run = checkpoint_run_dir(ckpt_path)
    if run is not None and (run.resolve() == root.resolve() or (run.resolve().parent == root.resolve().parent
                                                                and run.name.startswith(f"{root.name}-"))):
        return run
    candidates = (root if n == 0 else root.with_name(f"{root.name}-{n}") for n in range(10_000))
    return next(c for c in candidates if not _holds_a_run(c))


def checkpoint_run_dir(ckpt_path: str | None) -> Path | None:
    """``<dir>`` for a checkpoint ``<dir>/checkpoints/<name>.ckpt``, else None."""
    if ckpt_path in LIGHTNING_CKPT_NAMES or Path(ckpt_path).parent.name != "checkpoints":
        return None
    return Path(ckpt_path).parent.parent


RUN_DIR_VARIABLE = "GENZOO_RUN_DIR"


def _holds_a_run(directory: Path) -> bool:
    # a config.yaml alone (a user's own, or a run that failed at once) holds no results to protect
    return any((directory / name).exists() for name in ("checkpoints", "images", "evaluation.jsonl"))


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: what every config shares (seed, trainer, logger): read before ``--config``, so a config holds only what differs
DEFAULT_CONFIG_FILES = [str(CONFIG_DIR / "defaults.yaml")]


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
    import genzoo.datamodules  # noqa: F401  registers the datamodules as subclasses
    import genzoo.models  # noqa: F401  registers the models

    # read before --config, so a config and then the command line override them; per subcommand when there are
    # subcommands (a dict each: LightningCLI writes each one's description into it)
    defaults = {"default_config_files": DEFAULT_CONFIG_FILES}
    parser_kwargs = {name: dict(defaults) for name in ZooCLI.subcommands()} if run else defaults
    return ZooCLI(GenerativeModel, ZooDataModule, subclass_mode_model=True, subclass_mode_data=True,
                  save_config_callback=SaveConfigToRunDir, save_config_kwargs={"overwrite": True},
                  auto_configure_optimizers=False, parser_kwargs=parser_kwargs, args=args, run=run)


def available_configs() -> list[str]:
    """The repository's configs by short name (``wgan_gp/digits``)."""
    return sorted(p.relative_to(CONFIG_DIR).with_suffix("").as_posix() for p in CONFIG_DIR.glob("*/*.yaml"))


def resolve_config_names(args: list[str]) -> list[str]:
    """``--config wgan_gp/digits`` names ``configs/wgan_gp/digits.yaml`` of this repository when no such file
    exists where the command runs."""
    resolved = list(args)
    for i, arg in enumerate(resolved):
        key, _, value = arg.partition("=")
        if key != "--config":
            continue
        if not value and i + 1 < len(resolved):
            i, value = i + 1, resolved[i + 1]
        packaged = CONFIG_DIR / f"{value.removesuffix('.yaml')}.yaml"
        if value and not Path(value).exists() and packaged.is_file():
            resolved[i] = str(packaged) if resolved[i] == value else f"--config={packaged}"
    return resolved


def main() -> None:
    """The ``zoo`` console script (returns nothing, so the exit status is 0 on success). ``zoo configs`` lists the
    configs ``--config`` takes by short name; ``zoo evaluate``, ``zoo sample`` and ``zoo train-extractor`` are
    genzoo's own verbs (:mod:`genzoo.commands`); everything else goes to LightningCLI (``zoo fit``, ...)."""
    from genzoo.commands import VERBS, run_verb, verbs_help

    args = sys.argv[1:]
    if args[:1] == ["configs"]:
        print("\n".join(available_configs()))
        return
    if args[:1] and args[0] in VERBS:
        status = run_verb(args[0], args[1:])
        if status:
            sys.exit(status)
        return
    if not args or args[0] in ("-h", "--help"):  # LightningCLI's help lists its subcommands; ours come first
        print(f"{verbs_help()}\n  configs{' ' * (max(map(len, VERBS)) - 7)}  list the configs --config takes by "
              "short name\n\nLightning's subcommands (zoo fit --config NAME ...):", flush=True)
    with legacy_module_names():  # configs naming zoo.*, callbacks.*, datamodules.* (before genzoo) still run
        run_cli(resolve_config_names(args))


if __name__ == "__main__":
    main()
