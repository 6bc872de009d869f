"""AE-OT: the model's phases (autoencoder, encoder freeze, transport at the end of fitting), checkpoints that sample
right after loading, exact resume, bf16 and 2-process DDP through the CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from genzoo.aeot import AEOT
from genzoo.callbacks import FreezeEncoder, SampleGrid, StepCheckpoint
from genzoo.datamodules import Digits, Grid25
from genzoo.nets import LucicInfoGANDecoder
from tests.helpers import quiet_trainer

FAST_SOLVER = {"tolerance": 0.3, "max_steps": 400}


def small_digits(**kwargs) -> Digits:
    return Digits(batch_size=64, image_size=8, value_range=(0.0, 1.0), **kwargs)


def small_model(**kwargs) -> AEOT:
    settings = dict(data_shape=(1, 8, 8), latent_dim=8, transport_samples=200, solver=FAST_SOLVER)
    return AEOT(**{**settings, **kwargs})


# ------------------------------------------------------------------------------------------------ the phases

def test_training_ends_with_a_fitted_map_and_a_checkpoint_that_samples(tmp_path):
    model = small_model()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.sample(4)
    assert not model.ready_to_sample
    grid = SampleGrid(num_samples=16, every_n_steps=1, every_n_epochs=None)  # would fire at every step
    checkpoint = StepCheckpoint(dirpath=tmp_path, every_n_train_steps=1000, save_last=True, save_top_k=-1)
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[grid, checkpoint], enable_checkpointing=True,
                            limit_train_batches=8, log_every_n_steps=1)  # each step's loss, not interval means
    first_loss = None

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            nonlocal first_loss
            loss = float(trainer.callback_metrics["train/reconstruction"])
            first_loss = loss if first_loss is None else first_loss
            self.last = loss

    losses = Losses()
    trainer.callbacks.append(losses)
    trainer.fit(model, small_digits())
    assert losses.last < 0.8 * first_loss  # the autoencoder learns
    assert model.prior.fitted and model.prior.targets.shape[1] == 8 and model.prior.solve_report["codes"] == 200
    assert model.prior.solve_report["converged"]
    # sample-based callbacks waited for the map: one grid, at the end
    assert len(list((tmp_path / "images").glob("samples_grid*.png"))) == 1
    loaded = AEOT.load_from_checkpoint(tmp_path / "last.ckpt")
    torch.testing.assert_close(loaded.prior.potential, model.prior.potential, rtol=0, atol=0)
    a = model.generate(model.sample_latents(6, torch.Generator().manual_seed(1)))
    b = loaded.generate(loaded.sample_latents(6, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(a, b)
    # generated codes lie on segments between training codes (nearest training code is close; not copies)
    codes = loaded.sample_latents(200, torch.Generator().manual_seed(2))
    nearest = torch.cdist(codes, loaded.prior.targets).min(1).values
    spread = torch.cdist(loaded.prior.targets, loaded.prior.targets).median()
    assert (nearest < spread).all() and (nearest > 0).float().mean() > 0.9


def test_the_ot_targets_are_the_codes_of_exactly_the_training_subset(tmp_path):
    data = small_digits(train_subset=150)
    model = small_model(transport_samples=None)
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2).fit(model, data)
    subset_images = torch.stack([data.train_set[i]["x"] for i in range(150)])
    assert model.prior.solve_report["codes"] == 150
    expected = torch.unique(model.encode(subset_images), dim=0)
    torch.testing.assert_close(model.prior.targets, expected, rtol=0, atol=0)

    # sub-sampling the subset's codes again works, but is named as the inconsistency it is
    again = small_model(transport_samples=100)
    again.trainer = SimpleNamespace(datamodule=data)  # what _training_set reads when fitting ends
    with pytest.warns(UserWarning, match="train_subset=150 .* transport_samples=100"):
        dataset = again._training_set()
    again.trainer = None
    again.fit_transport(dataset)
    assert again.prior.solve_report["codes"] == 100


def test_the_per_pair_rule_reaches_the_prior_and_samples_exactly_n():
    model = small_model(pairing="per_pair", top_k=3, pair_pool=500, interpolation_weight=0.75)
    assert (model.prior.pairing, model.prior.pair_pool) == ("per_pair", 500)
    assert model.hparams.pairing == "per_pair"
    codes = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    model.prior.fit(codes, **FAST_SOLVER)
    assert model.generate(model.sample_latents(7, torch.Generator().manual_seed(1))).shape == (7, 1, 8, 8)


def test_freeze_encoder_plateau_rule():
    callback = FreezeEncoder(patience=2, threshold=0.1, min_epochs=4)
    frozen = []
    module = SimpleNamespace(encoder_frozen=False, freeze_encoder=lambda: frozen.append(True))
    losses = [1.0, 0.5, 0.48, 0.47, 0.46, 0.45]  # after epoch 2 nothing improves by 10 %
    for epoch, loss in enumerate(losses):
        trainer = SimpleNamespace(callback_metrics={"train/reconstruction_epoch": torch.tensor(loss)},
                                  current_epoch=epoch)
        callback.on_train_epoch_end(trainer, module)
        if frozen:
            break
    assert callback.frozen_at == 4  # 2 bad epochs by epoch 4, and min_epochs 4
    restored = FreezeEncoder()
    restored.load_state_dict(callback.state_dict())
    assert restored.state_dict() == callback.state_dict()
    with pytest.raises(ValueError, match="does not log"):
        FreezeEncoder(monitor="nope").on_train_epoch_end(trainer, SimpleNamespace(encoder_frozen=False))
    with pytest.raises(ValueError, match="patience"):
        FreezeEncoder(patience=0)


def test_a_frozen_encoder_stops_changing_batch_norm_included_while_the_decoder_refines(tmp_path):
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            snapshots[trainer.current_epoch] = ({k: v.clone() for k, v in pl_module.encoder.state_dict().items()},
                                                {k: v.clone() for k, v in pl_module.decoder.state_dict().items()})

    model = small_model()
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_train_batches=4,
                            callbacks=[FreezeEncoder(max_epochs=1), Snapshot()])
    trainer.fit(model, small_digits())
    assert model.encoder_frozen and not model.encoder.training
    encoder_after_freeze, decoder_after_freeze = snapshots[1]
    assert any("running_mean" in k for k in encoder_after_freeze)
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_after_freeze[key], rtol=0, atol=0, msg=f"encoder {key} moved")
    assert any(not torch.equal(v, decoder_after_freeze[k]) for k, v in model.decoder.state_dict().items())
    assert not torch.equal(snapshots[0][0]["net.0.weight"], encoder_after_freeze["net.0.weight"])


def test_resume_continues_exactly(tmp_path):
    def fit(root, epochs, ckpt=None) -> AEOT:
        L.seed_everything(0)
        model = small_model()
        callbacks = [FreezeEncoder(max_epochs=2),
                     StepCheckpoint(dirpath=root, every_n_train_steps=1000, save_last=True, save_top_k=-1)]
        trainer = quiet_trainer(root, max_epochs=epochs, callbacks=callbacks, enable_checkpointing=True,
                                limit_train_batches=4)
        trainer.fit(model, small_digits(), ckpt_path=ckpt)
        return model

    straight = fit(tmp_path / "a", 4)
    fit(tmp_path / "b", 3)  # freezes after epoch 2, solves OT at the end of epoch 3
    resumed = fit(tmp_path / "b", 4, ckpt=str(tmp_path / "b" / "last.ckpt"))
    assert resumed.encoder_frozen
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")


def test_without_an_autoencoder_the_map_runs_on_the_data(tmp_path):
    data = Grid25(num_samples=250, batch_size=250, stratified=True, num_val_samples=0, num_test_samples=0)
    model = AEOT(data_shape=(2,), latent_dim=2, autoencoder=False, top_k=20, angle_threshold=0.2,
                 interpolation_weight=0.75, solver={"tolerance": 0.2})
    quiet_trainer(tmp_path, max_epochs=1).fit(model, data)
    from genzoo.callbacks.modes import grid_mode_metrics

    metrics = grid_mode_metrics(model.sample(1000), data.modes, data.std)
    # 1,000 samples over 25 modes are ~0.012 from their own histogram in KL; a map that merged modes is > 0.1
    assert metrics["modes"] == 25 and metrics["hq_fraction"] > 0.98 and metrics["reverse_kl"] < 0.05


def test_stratified_mixtures_balance_the_components():
    data = Grid25(num_samples=512, stratified=True, num_val_samples=0, num_test_samples=0)
    data.setup()
    counts = torch.bincount(data.train_set.tensors["label"], minlength=25)
    assert counts.max() - counts.min() <= 1
    iid = Grid25(num_samples=512, num_val_samples=0, num_test_samples=0)
    iid.setup()
    assert torch.bincount(iid.train_set.tensors["label"], minlength=25).max() - counts.min() > 1


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="latent_dim must equal the data dimension"):
        AEOT(data_shape=(2,), latent_dim=3, autoencoder=False)
    with pytest.raises(ValueError, match="unknown OT solver settings"):
        small_model(solver={"learning_rate": 1.0})
    with pytest.raises(ValueError, match="transport_samples"):
        small_model(transport_samples=0)
    with pytest.raises(ValueError, match="code_l1_weight"):
        small_model(code_l1_weight=-1.0)
    with pytest.raises(ValueError, match="pairing must be one of"):
        small_model(pairing="per_cell")


# ------------------------------------------------------------------------------------------- the decoder

@pytest.mark.parametrize(("shape", "value_range"), [((1, 28, 28), (0.0, 1.0)), ((3, 32, 32), (-1.0, 1.0)),
                                                    ((3, 64, 64), (0.0, 1.0)), ((1, 8, 8), (0.0, 1.0))])
def test_lucic_infogan_decoder_shapes_and_range(shape, value_range):
    decoder = LucicInfoGANDecoder(16, shape, value_range)
    out = decoder(10 * torch.randn(5, 16, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (5, *shape)
    assert value_range[0] <= float(out.min()) and float(out.max()) <= value_range[1]
    assert float(out.min()) < (value_range[0] + value_range[1]) / 2 < float(out.max())  # the range is used
    side = shape[1] // 4
    assert decoder.dense[3].out_features == 128 * side * side  # the dense layer keeps the side / 4 grid


def test_lucic_infogan_decoder_parameters_by_hand():
    # 28 px, 1 channel, latent 100: Dense(100, 1024) + BN(1024) + Dense(1024, 128·7·7) + BN(6272)
    # + ConvT(128 -> 64, 4x4) + BN(64) + ConvT(64 -> 1, 4x4)
    by_hand = ((100 * 1024 + 1024) + 2 * 1024 + (1024 * 6272 + 6272) + 2 * 6272
               + (128 * 64 * 16 + 64) + 2 * 64 + (64 * 1 * 16 + 1))
    decoder = LucicInfoGANDecoder(100, (1, 28, 28))
    assert sum(p.numel() for p in decoder.parameters()) == by_hand == 6_679_105
    convolutions = [m for m in decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d | torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convolutions] == [
        (128, 64, (4, 4), (2, 2)), (64, 1, (4, 4), (2, 2))]  # no third upsampling, no k3 output conv
    weights = torch.cat([m.weight.flatten() for m in decoder.modules() if isinstance(m, torch.nn.Linear)])
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05)  # compare_gan's N(0, 0.02)
    leaky = LucicInfoGANDecoder(100, (1, 28, 28), negative_slope=0.2)
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in leaky.modules())
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in decoder.modules())
    with pytest.raises(ValueError, match="multiple of 4"):
        LucicInfoGANDecoder(100, (1, 30, 30))
    with pytest.raises(ValueError, match="negative_slope"):
        LucicInfoGANDecoder(100, (1, 28, 28), negative_slope=-1.0)


# ---------------------------------------------------------------------------------------------------- CLI

def test_aeot_under_bf16_and_two_process_ddp(tmp_path, monkeypatch):
    from genzoo.cli import run_cli
    from tests.helpers import ddp_run_parameters
    from tests.test_cli import REPO, quick_args

    monkeypatch.chdir(REPO)
    common = ["--model", "genzoo.aeot.AEOT", "--model.init_args.latent_dim", "8",
              "--model.init_args.transport_samples", "200", "--model.init_args.solver", json.dumps(FAST_SOLVER),
              "--data", "genzoo.datamodules.Digits", "--data.init_args.image_size", "8",
              "--data.init_args.batch_size", "32",
              "--data.init_args.value_range", "[0.0, 1.0]"]
    cli = run_cli(["fit", *common, *quick_args(tmp_path / "bf16", steps=12), "--trainer.precision", "bf16-mixed"])
    assert cli.trainer.precision == "bf16-mixed" and cli.model.prior.solve_report["converged"]
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    rank0 = ddp_run_parameters([*common, *quick_args(tmp_path / "ddp", steps=12)], tmp_path)
    assert rank0["prior.potential"].shape == (200,)  # both ranks solved the same OT problem to the same h
    single = run_cli(["fit", *common, *quick_args(tmp_path / "single", steps=12)]).model
    assert single.prior.targets.shape == rank0["prior.targets"].shape
