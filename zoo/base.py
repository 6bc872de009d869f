"""The base every zoo model shares: the uniform generative API, one training contract, manual optimization of
named networks, reproducible per-step randomness and non-finite guards.

The public model API, all that callbacks and users rely on: ``sample(n)``, ``generate(z)``, ``sample_latents(n)``,
``sampling_network``, ``ready_to_sample``, ``latent_dim``, ``data_shape``, ``value_range`` and ``progress_step``
(every model); ``encode``, ``decode``, ``reconstruct`` and ``prior`` (autoencoders); ``k``, ``latent_current`` and
``generate_with_tangents`` (FlatGAN). Everything else is training logic.

The training contract (after StyleGAN2-ADA's phase list): a model's :attr:`phase_schedule` says, as data, which
phases (named updates) each batch runs; a *cycle* of batches makes one unit of progress (a generator step, an
outer step), counted by :attr:`progress_step` and bounded by the model's budget. The base walks the schedule,
counts, stops, saves the schedule state and runs :meth:`after_training` once the networks are trained; a family
implements :meth:`train_phases` (its updates for one batch), and noise reaches every loss as an explicit
``torch.Generator`` argument drawn from :meth:`noise`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from genzoo.checkpoints import (
    INSTANTIATOR,
    changed_settings,
    current_module_name,
    describe_change,
    legacy_module_names,
    plain_config,
    require_zoo_section,
    root_setting,
    upgrade_class_paths,
)
from genzoo.compat import ddp_options, logs_written_after_this_step, trainer_of
from genzoo.ops.utils import eval_mode, full_precision, seeded
from genzoo.types import OptimizerFactory


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf: training stops and the last good checkpoint is kept."""


class DivergenceError(NonFiniteError):
    """Parameters grew far past any healthy run's while finite (:class:`genzoo.callbacks.DivergenceGuard`)."""


class PhaseSchedule(Protocol):
    """Which phases each batch of a training cycle runs: ``cycle(step)`` is one tuple of phase names per batch of
    cycle ``step`` (the step-th unit of progress), in order."""

    def cycle(self, step: int) -> Sequence[tuple[str, ...]]: ...


class FixedCycle:
    """The same cycle every step, e.g. ``FixedCycle([("autoencoder", "adversary")])``: one batch per outer step."""

    def __init__(self, batches: Sequence[Sequence[str]]) -> None:
        if not batches:
            raise ValueError("a training cycle needs at least one batch")
        self.batches = tuple(tuple(phases) for phases in batches)

    def cycle(self, step: int) -> tuple[tuple[str, ...], ...]:
        return self.batches

    def __repr__(self) -> str:
        return f"FixedCycle({list(self.batches)})"


class GenerativeModel(L.LightningModule):
    """The model, any genzoo model (``--model.help genzoo.wgan.WGANGP`` lists one model's options).

    A family base (:class:`~genzoo.adversarial.AdversarialModel`, :class:`~genzoo.autoencoder.AutoencoderModel`) sets
    :attr:`phase_schedule` and the budget, registers optimizers with :meth:`add_optimizer` and implements
    :meth:`train_phases` with :meth:`update`; generation goes through :attr:`sampling_network`. Init arguments
    are recorded as hyper-parameters here, for every class in the chain (keyword pass-through included)."""

    #: How many fp16 steps in a row may overflow before we call it divergence (the GradScaler skips them).
    max_overflow_streak = 20
    #: Init arguments that only steer a run (how long it trains): on resume the model's value wins over the
    #: checkpoint's. Every other init argument must match the checkpoint unless ``allowed_resume_changes`` names it.
    run_settings: frozenset[str] = frozenset({"max_generator_steps", "max_outer_steps", "compile"})
    #: the networks ``compile`` compiles (attribute names). Networks a loss differentiates twice (gradient
    #: penalties) stay eager: compiled graphs (AOTAutograd) do not support double backward.
    compiled_networks: tuple[str, ...] = ()
    #: the unit of progress (logged as ``train/<progress_name>``) and the init argument that bounds it
    progress_name = "step"
    budget_name = "max_steps"

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 128, compile: bool | dict[str, Any] = False) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not data_shape or any(int(s) < 1 for s in data_shape):
            raise ValueError(f"data_shape must be a non-empty tuple of positive sizes, got {data_shape}")
        self._save_init_arguments(inspect.currentframe())
        self.automatic_optimization = False
        self.data_shape = tuple(int(s) for s in data_shape)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.latent_dim = int(latent_dim)
        self.compile_options = checked_compile_options(compile)
        self._optimizer_specs: dict[str, tuple[Callable[[], list[nn.Parameter]], OptimizerFactory]] = {}
        self.noise_seed: int | None = None  # fixed at fit start; restored from checkpoints
        self._rng: torch.Generator | None = None
        self._overflow_streak = 0
        #: init arguments a resume may change deliberately (``zoo fit --allow_changed``), e.g. optimizers
        self.allowed_resume_changes: frozenset[str] = frozenset()
        self._apply_optimizer_settings_at_start = False
        # the training contract's state: saved in checkpoints so a resumed run continues the cycle exactly
        self.phase_schedule: PhaseSchedule = FixedCycle([()])  # a family base sets its own
        self.step_limit: int | None = None  # the budget, in units of progress
        self.progress_step = 0  # completed cycles
        self.cycle_position = 0  # batches taken in the current cycle
        self._recorded: dict[str, list[torch.Tensor | float]] = {}  # this logging interval's scalars (record)

    def _save_init_arguments(self, frame) -> None:
        """Hyper-parameters = the init arguments the model's class accepts, gathered from every ``__init__`` in the
        chain (so ``**kwargs`` passed through to a base are recorded with their defaults); a base's arguments the
        class does not accept (a network a subclass builds itself) are left out, so the checkpoint rebuilds it."""
        accepted = accepted_init_arguments(type(self))
        every = {name for klass in type(self).__mro__ if "__init__" in vars(klass)
                 for name in inspect.signature(vars(klass)["__init__"]).parameters}
        self.save_hyperparameters(ignore=sorted(every - accepted), frame=frame)

    # ---- the uniform API -------------------------------------------------------------------------------
    @property
    def sampling_network(self) -> nn.Module:
        """The network that maps latents to data (a generator, its EMA copy, or a decoder)."""
        raise NotImplementedError

    @property
    def ready_to_sample(self) -> bool:
        """False while the model cannot generate yet (AE-OT before its transport map is solved); sample-based
        callbacks wait."""
        return True

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents from the model's prior (standard normal unless a subclass says otherwise)."""
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Data for given latents, in ``value_range``; networks run in eval mode (batch-norm running stats)."""
        self.check_latents(z)
        net = self.sampling_network
        with eval_mode(net):
            out = [net(chunk.to(self.device)) for chunk in z.split(batch_size)]
        return torch.cat(out).float()

    def check_latents(self, z: torch.Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be shaped (n, {self.latent_dim}), got {tuple(z.shape)}")

    def sample(self, n: int, batch_size: int = 1000) -> torch.Tensor:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return self.generate(self.sample_latents(n), batch_size)

    # ---- optimizers --------------------------------------------------------------------------------------
    def add_optimizer(self, name: str, parameters: Callable[[], list[nn.Parameter]],
                      factory: OptimizerFactory) -> None:
        """Register one optimizer; ``parameters`` is a callable so EMA copies or late-built nets stay out."""
        self._optimizer_specs[name] = (parameters, factory)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [factory(params()) for params, factory in self._optimizer_specs.values()]

    def optimizer(self, name: str):
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return optimizers[list(self._optimizer_specs).index(name)]

    @contextlib.contextmanager
    def training_phase(self, name: str) -> Iterator[None]:
        """Only the phase's optimizer's parameters require grad inside, so the forward pass builds no graph
        for the other networks (cheaper, and DDP sees the rest as unused)."""
        with self.toggled_optimizer(self.optimizer(name)):
            yield

    def update(self, name: str, loss: torch.Tensor, terms: dict[str, torch.Tensor] | None = None) -> None:
        """zero_grad, backward, step for the named optimizer, after a finiteness check; logs the terms."""
        self.check_finite(name, loss)
        optimizer = self.optimizer(name)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.record({f"{name}_loss": loss, **(terms or {})})

    def record(self, terms: dict[str, torch.Tensor | float]) -> None:
        """Training scalars, logged as ``train/<name>``: kept on the device (no sync) and handed to ``self.log``
        once per logging interval (the trainer's ``log_every_n_steps``) as their means over the interval, so
        every step counts in what reaches the logger while the hot path pays no ``self.log`` (about 1 ms a
        call) and no host transfer. ``log_every_n_steps: 1`` logs every step's values."""
        for key, value in terms.items():
            self._recorded.setdefault(key, []).append(value.detach() if torch.is_tensor(value) else float(value))

    def log_recorded(self) -> None:
        """Log the interval's means of :meth:`record`'s scalars (one ``log_dict``) and start a new interval."""
        means = {f"train/{key}": torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.device)
                                              for v in values]).mean()
                 for key, values in self._recorded.items()}
        self._recorded.clear()
        if means:
            self.log_dict(means, on_step=True, on_epoch=False)

    # ---- the training contract ---------------------------------------------------------------------------
    def train_phases(self, batch: dict[str, torch.Tensor], phases: tuple[str, ...]) -> None:
        """Run ``phases`` (names from :attr:`phase_schedule`) on one training batch."""
        raise NotImplementedError

    def after_training(self) -> None:
        """A stage that runs once the networks are trained, inside the fit's last training step (so the final
        checkpoint, sample grids and evaluations all see it): AE-OT solves its transport map here."""

    def after_training_done(self) -> bool:
        """False while :meth:`after_training` still has work to do."""
        return True

    def noise(self) -> torch.Generator:
        """The generator for the current update's noise, handed to the losses: re-seeded from (seed, rank, global
        step), so training noise is a pure function of progress (a resumed run draws exactly what the
        uninterrupted one would) and DDP ranks draw different noise."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
        rank = self.global_rank if trainer_of(self) is not None else 0
        key = hash((self.noise_seed or 0, rank, self.global_step)) & 0x7FFF_FFFF_FFFF_FFFF
        return self._rng.manual_seed(key)

    def training_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        """The checked batch without its labels (the zoo's models are unconditional); held-out batches too."""
        return {k: v for k, v in self.checked_batch(batch).items() if k != "label"}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        batch = self.training_batch(batch)
        cycle = self.phase_schedule.cycle(self.progress_step)
        self.train_phases(batch, cycle[self.cycle_position])
        self.cycle_position += 1
        if self.cycle_position >= len(cycle):
            self.cycle_position = 0
            self.progress_step += 1
            if self.budget_reached():
                self.trainer.should_stop = True
        fit_ends = fit_ends_after_this_batch(self.trainer, batch_idx)
        if not self.after_training_done() and fit_ends:
            with full_precision(self.device):  # training_step runs under the trainer's autocast
                self.after_training()
        if logs_written_after_this_step(self.trainer) or fit_ends or self.trainer.is_last_batch:
            self._recorded[self.progress_name] = [float(self.progress_step)]  # the count, not a mean
            self.log_recorded()

    def on_train_end(self) -> None:
        if not self.after_training_done():  # stopped some other way (max_time, an interrupt, early stopping)
            self.after_training()
            rank_zero_info(f"{type(self).__name__}: fit stopped before its last step; the after-training stage ran "
                           "after the last checkpoint, save this model to keep its result")

    # ---- robustness --------------------------------------------------------------------------------------
    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """The fp16 GradScaler when training under ``16-mixed``, else None (bf16 and fp32 need none)."""
        if trainer_of(self) is None:
            return None
        plugin = self.trainer.precision_plugin
        return plugin.scaler if isinstance(plugin, MixedPrecision) else None

    def loss_scale(self) -> float | None:
        scaler = self.grad_scaler()
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None

    def check_finite(self, name: str, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            self._overflow_streak = 0
            return
        # Under fp16 an overflow is routine: the GradScaler skips the step and lowers its scale.
        if self.loss_scale() is not None and self._overflow_streak < self.max_overflow_streak:
            self._overflow_streak += 1
            return
        raise NonFiniteError(
            f"{type(self).__name__}: the {name} loss is {loss.detach().float().item()} at global step "
            f"{self.global_step} ({self.progress()}); training stopped, earlier checkpoints are kept. "
            "Lower the learning rate or check the data.")

    def checked_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        """The batch dict, after checking it has samples ``"x"`` of the model's ``data_shape``."""
        if not isinstance(batch, dict) or "x" not in batch:
            raise TypeError("zoo models expect dict batches with an 'x' entry (use a zoo datamodule)")
        if tuple(batch["x"].shape[1:]) != self.data_shape:
            raise ValueError(f"batch samples have shape {tuple(batch['x'].shape[1:])}, the model was built for "
                             f"{self.data_shape}")
        return batch

    def progress(self) -> str:
        return f"{self.progress_name.replace('_', ' ')} {self.progress_step}"

    def step_budget(self) -> tuple[str, int, int] | None:
        """``(setting, steps taken, limit)`` of the model's own training budget, or None when it has none."""
        if self.step_limit is None:
            return None
        return self.budget_name, self.progress_step, self.step_limit

    def budget_reached(self) -> bool:
        budget = self.step_budget()
        return budget is not None and budget[1] >= budget[2]

    def check_parameters_finite(self) -> None:
        for name, p in self.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                raise NonFiniteError(f"parameter {name} is not finite at global step {self.global_step} "
                                     f"({self.progress()}); not saving this state")

    # ---- held-out checks: zoo validate, zoo test ----------------------------------------------------------
    def held_out_terms(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses on a held-out batch (no update): what ``validate`` and ``test`` report, averaged over the split.
        ``generator`` seeds any noise, so the figures do not depend on the global RNG or on the run."""
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_held_out("val", batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._log_held_out("test", batch, batch_idx)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """``zoo predict``: samples for a batch of indices, from latents seeded by the batch (reproducible)."""
        return self.generate(self.sample_latents(len(batch), seeded(batch_idx)))

    @torch.no_grad()
    def _log_held_out(self, stage: str, batch: Any, batch_idx: int) -> None:
        batch = self.training_batch(batch)
        terms = self.held_out_terms(batch, seeded(batch_idx, self.device))
        self.log_dict({f"{stage}/{name}": value.float() for name, value in terms.items()}, on_step=False,
                      on_epoch=True, sync_dist=True, batch_size=len(batch["x"]))

    # ---- randomness -------------------------------------------------------------------------------------
    def randn(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=self.device)

    def rand(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=self.device)

    # ---- Lightning hooks ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.noise_seed is None:
            self.noise_seed = torch.initial_seed()
        if stage == "fit" and self.compile_options is not None:
            self.compile_networks()
        options = ddp_options(trainer_of(self).strategy) if trainer_of(self) is not None else None
        if options is not None and not options.get("find_unused_parameters", False):
            # Each phase updates one network, so the others are unused in that backward pass.
            rank_zero_info(f"{type(self).__name__}: enabling DDP find_unused_parameters (one network per phase)")
            options["find_unused_parameters"] = True

    def compile_networks(self) -> list[str]:
        """``torch.compile`` each of :attr:`compiled_networks` in place (``nn.Module.compile``: the forward pass
        is compiled, parameter names and checkpoints are unchanged); the training logic stays eager. Returns
        the names compiled."""
        names = [name for name in self.compiled_networks
                 if isinstance(getattr(self, name, None), nn.Module) and list(getattr(self, name).parameters())]
        for name in names:
            getattr(self, name).compile(**self.compile_options)
        return names

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_parameters_finite()
        if checkpoint.get("hyper_parameters") and "_instantiator" not in checkpoint["hyper_parameters"]:
            # built in Python: partials and classes saved as class-path configs, so the checkpoint loads with
            # weights_only=True and load_from_checkpoint instantiates them as the CLI does
            checkpoint["hyper_parameters"] = {**plain_config(dict(checkpoint["hyper_parameters"])),
                                              "_instantiator": INSTANTIATOR}
        checkpoint["zoo"] = {"noise_seed": self.noise_seed,
                             "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
                             "schedule": {"step": self.progress_step, "position": self.cycle_position}}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's, also for checkpoints written before the ``genzoo`` namespace (their class paths name
        ``zoo.*``, ``callbacks.*``, ``datamodules.*``)."""
        with legacy_module_names():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        require_zoo_section(checkpoint)
        if "class_path" in checkpoint["zoo"]:
            checkpoint["zoo"]["class_path"] = current_module_name(checkpoint["zoo"]["class_path"])
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"] = upgrade_class_paths(checkpoint["hyper_parameters"])
        self.check_resumable(checkpoint)
        self.noise_seed = int(checkpoint["zoo"]["noise_seed"])
        self.progress_step, self.cycle_position = schedule_state(checkpoint["zoo"].get("schedule", {}))

    def check_resumable(self, checkpoint: dict[str, Any]) -> None:
        """The checkpoint must hold this class; a resumed fit must have the checkpoint's settings, except run
        settings (the model's value wins, said in one line) and ``allowed_resume_changes`` (accepted, said)."""
        source = f"checkpoint {trainer_of(self).ckpt_path}" if trainer_of(self) is not None else "the checkpoint"
        own = f"{type(self).__module__}.{type(self).__qualname__}"
        saved = checkpoint["zoo"].get("class_path", own)
        if saved != own:
            raise ValueError(f"{source} holds a {saved} model, but this run builds a {own}: resume with the config "
                             "the checkpoint was trained with (its run directory keeps a copy, config.yaml)")
        fitting = trainer_of(self) is not None and trainer_of(self).state.fn == "fit"
        if not fitting or not self.hparams:  # load_from_checkpoint builds from the checkpoint's own settings
            return
        changes = changed_settings(checkpoint.get("hyper_parameters", {}), dict(self.hparams))
        refused = [name for name in changes
                   if root_setting(name) not in self.run_settings | self.allowed_resume_changes]
        if refused:
            listed = "\n".join(f"  {describe_change(name, changes[name])}" for name in refused)
            roots = ",".join(sorted({root_setting(name) for name in refused}))
            raise ValueError(
                f"{source} was trained with other settings than this run's:\n{listed}\nThey change the model's "
                "shapes or objective, so the run cannot continue from it (data_shape and value_range come from "
                "the datamodule). Start a new run, or accept a deliberate change with "
                f"`zoo fit ... --allow_changed {roots}` (safe for optimizer settings, e.g. a lower learning rate "
                "for fine-tuning).")
        for name, change in changes.items():
            kind = ("the run uses the new value" if root_setting(name) in self.run_settings
                    else "accepted (allowed change)")
            rank_zero_info(f"{type(self).__name__} resume: {describe_change(name, change)}; {kind}")
        # restored optimizer states carry the checkpoint's lr, betas, ...: the configured ones are set at start
        self._apply_optimizer_settings_at_start = any(root_setting(name) in self.allowed_resume_changes
                                                      for name in changes)

    def on_train_start(self) -> None:
        if self._apply_optimizer_settings_at_start:
            self._apply_optimizer_settings_at_start = False
            self.apply_configured_optimizer_settings()
        if self.budget_reached():
            name, taken, limit = self.step_budget()
            rank_zero_info(f"{type(self).__name__}: this run is already finished ({self.progress()}, {name}="
                           f"{limit}); nothing to train. Raise {name} to train longer.")
            self.trainer.should_stop = True

    def apply_configured_optimizer_settings(self) -> None:
        """Every optimizer's hyper-parameters (lr, betas, ...) as configured, its state (moments) kept."""
        for name, (params, factory) in self._optimizer_specs.items():
            configured = factory(params()).param_groups
            for group, wanted in zip(self.optimizer(name).param_groups, configured, strict=True):
                group.update({key: value for key, value in wanted.items() if key != "params"})


def checked_compile_options(compile: bool | dict[str, Any]) -> dict[str, Any] | None:
    """None for ``compile: false``; ``torch.compile``'s keyword arguments for ``true`` (its defaults) or a dict
    (e.g. ``{mode: max-autotune}``, ``{backend: aot_eager}``), checked against its signature."""
    if isinstance(compile, bool):
        return {} if compile else None
    if not isinstance(compile, dict):
        raise ValueError(f"compile must be true, false or a dict of torch.compile options, got {compile!r}")
    known = set(inspect.signature(torch.compile).parameters) - {"model"}
    unknown = sorted(set(compile) - known)
    if unknown:
        raise ValueError(f"compile: unknown torch.compile options {unknown}; known: {sorted(known)}")
    return dict(compile)


def accepted_init_arguments(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` accepts: its ``__init__``'s, and while that passes ``**kwargs`` on, its
    bases' (the resolution jsonargparse applies for the CLI)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def schedule_state(saved: dict[str, int]) -> tuple[int, int]:
    """``(progress step, cycle position)`` from a checkpoint's schedule state, in this format or the one before
    the shared training contract (``generator_step``/``critic_steps_in_cycle``, ``outer_step``/``cycle_position``)."""
    if "step" in saved:
        return int(saved["step"]), int(saved.get("position", 0))
    if "generator_step" in saved:
        return int(saved["generator_step"]), int(saved.get("critic_steps_in_cycle", 0))
    return int(saved.get("outer_step", 0)), int(saved.get("cycle_position", 0))


def max_steps_reached(trainer: L.Trainer) -> bool:
    return trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps


def fit_stops_after(trainer: L.Trainer, epochs: int) -> bool:
    """True when ``fit`` stops once ``epochs`` epochs are complete: a stop request, max_steps or max_epochs."""
    epochs_done = trainer.max_epochs not in (None, -1) and epochs >= trainer.max_epochs
    return trainer.should_stop or max_steps_reached(trainer) or epochs_done


def fit_is_finished(trainer: L.Trainer) -> bool:
    """True at the start of ``fit`` when there is nothing to train: a resumed run at its step or epoch limit, or
    a stop request (the model's own budget)."""
    return fit_stops_after(trainer, trainer.current_epoch)


def fit_ends_after_this_epoch(trainer: L.Trainer) -> bool:
    """True in ``on_train_epoch_end`` of the epoch after which ``fit`` stops."""
    return fit_stops_after(trainer, trainer.current_epoch + 1)


def fit_ends_after_this_batch(trainer: L.Trainer, batch_idx: int) -> bool:
    """True in the training step after which ``fit`` stops: a stop request, max_steps, or the last batch of the
    last epoch (``limit_train_batches`` included)."""
    last_batch = trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches
    return trainer.should_stop or max_steps_reached(trainer) or (last_batch and fit_ends_after_this_epoch(trainer))

