"""GenerativeMetrics: the zoo's metrics as a torchmetrics.Metric (cross-checked with torchmetrics' FID and KID,
synced across 2 gloo processes, with saved reference features; the Evaluator computes through it)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genzoo.evaluation import MetricOptions, build_extractor
from genzoo.evaluation.torchmetric import GenerativeMetrics

N = 300


def samples(seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(N, 1, 8, 8, generator=g) * 2 - 1 + shift).clamp(-1, 1)


class PixelFeatures(nn.Module):
    """The zoo's pixel extractor behind torchmetrics' custom-feature interface, so both see the same features."""

    num_features = 64

    def __init__(self) -> None:
        super().__init__()
        self.pixels = build_extractor("pixels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixels(x, (-1.0, 1.0))


def full_set_options() -> MetricOptions:
    return MetricOptions(kid_subsets=1, kid_subset_size=N)  # one subset of everything: no random draws


def test_fid_and_kid_equal_torchmetrics_own_on_the_same_features():
    real, fake = samples(0), samples(1, shift=0.3)
    ours = GenerativeMetrics(["fid", "kid"], extractor="pixels", options=full_set_options())
    fid, kid = FrechetInceptionDistance(feature=PixelFeatures()), KernelInceptionDistance(
        feature=PixelFeatures(), subsets=1, subset_size=N)
    for batch_real, batch_fake in zip(real.split(100), fake.split(100), strict=True):
        ours.update(batch_real, real=True)
        ours.update(batch_fake, real=False)
        for metric in (fid, kid):
            metric.update(batch_real, real=True)
            metric.update(batch_fake, real=False)
    values = ours.compute()
    assert values["fid"] > 0.1
    assert values["fid"] == pytest.approx(float(fid.compute()), rel=1e-5)
    assert values["kid"] == pytest.approx(float(kid.compute()[0]), rel=1e-5)


def test_saved_reference_features_give_the_same_values(tmp_path):
    real, fake = samples(0), samples(1, shift=0.3)
    first = GenerativeMetrics(["fid", "precision_recall"], extractor="pixels")
    first.update(real, real=True)
    first.update(fake, real=False)
    first.save_reference(tmp_path / "reference.pt")
    second = GenerativeMetrics(["fid", "precision_recall"], extractor="pixels")
    second.load_reference(tmp_path / "reference.pt")
    second.update(fake, real=False)
    assert second.compute() == first.compute()
    mismatched = GenerativeMetrics(["fid"], extractor="pixels")
    torch.save({"protocol": {"extractor": "other"}, "features": torch.zeros(2, 64), "pixels": None},
               tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="another extractor protocol"):
        mismatched.load_reference(tmp_path / "foreign.pt")


def test_missing_samples_and_logits_are_clear_errors():
    memorization = GenerativeMetrics(["memorization"], extractor="pixels")
    memorization.update(samples(0), real=True)
    memorization.update(samples(1), real=False)
    with pytest.raises(ValueError, match=r"at least 2 train samples .* update\(x, role='train'\)"):
        memorization.compute()
    with pytest.raises(ValueError, match="need class logits"):
        GenerativeMetrics(["inception_score"], extractor="pixels")
    metric = GenerativeMetrics(["fid"], extractor="pixels")
    metric.update(samples(0), real=True)
    with pytest.raises(ValueError, match="at least 2 fake samples"):
        metric.compute()


def _rank(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    metric = GenerativeMetrics(["fid", "kid", "precision_recall"], extractor="pixels", options=full_set_options())
    metric.update(samples(0)[rank::2], real=True)  # each rank sees half of each set
    metric.update(samples(1, shift=0.3)[rank::2], real=False)
    queue.put((rank, metric.compute()))
    dist.destroy_process_group()


def test_two_gloo_processes_sync_to_the_single_process_values():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_rank, args=(rank, port, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=300) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    single = GenerativeMetrics(["fid", "kid", "precision_recall"], extractor="pixels", options=full_set_options())
    single.update(samples(0), real=True)
    single.update(samples(1, shift=0.3), real=False)
    expected = single.compute()
    for rank in range(2):
        for name, value in expected.items():
            assert results[rank][name] == pytest.approx(value, rel=1e-5, abs=1e-9), (rank, name)


def test_memorization_with_train_and_test_roles_equals_the_evaluators_function():
    from genzoo.evaluation import FeatureSet, MetricInputs
    from genzoo.evaluation.registry import METRICS

    metric = GenerativeMetrics(["memorization"], extractor="pixels")
    pixels = build_extractor("pixels")
    sets = {"real": samples(0), "fake": samples(1, shift=0.3), "train": samples(2), "test": samples(3)}
    for role, x in sets.items():
        metric.update(x, role=role)
    as_sets = {role: FeatureSet(pixels(x, (-1.0, 1.0)), ((x + 1) / 2 * 255).round().to(torch.uint8))
               for role, x in sets.items()}
    inputs = MetricInputs(as_sets["fake"], as_sets["real"], MetricOptions(), 0, "reference",
                          {"train": as_sets["train"], "test": as_sets["test"]})
    expected = METRICS["memorization"].function(inputs)
    assert metric.compute() == pytest.approx(expected, rel=1e-6)
