"""``genzoo.evaluation.metrics`` against the straightforward reference implementations in ``tests.metric_references``
(and torch-fidelity for KID), on small synthetic feature sets, plus the properties each metric must have."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from genzoo.evaluation import metrics as M
from tests import metric_references as R


def features(n: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Non-negative correlated features (ReLU of a fixed random linear map of Gaussians), float32."""
    mixing = np.random.default_rng(1234).normal(size=(dim, dim)) / math.sqrt(dim)
    x = np.random.default_rng(seed).normal(size=(n, dim)) @ mixing + shift
    return torch.from_numpy(scale * np.maximum(x, 0).astype(np.float32))


def mixture(n: int, modes: list[int], seed: int, dim: int = 16, num_modes: int = 10) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` points spread evenly over the given ``modes`` of a fixed mixture of well-separated unit Gaussians
    (means 10·e_i + small offsets, so any two means are > 14 apart), with their mode labels."""
    offsets = np.random.default_rng(99).normal(0, 0.5, (num_modes, dim))
    means = 10.0 * np.eye(num_modes, dim) + offsets
    rng = np.random.default_rng(seed)
    labels = np.asarray(modes)[np.arange(n) % len(modes)]
    x = means[labels] + rng.normal(size=(n, dim))
    return torch.from_numpy(x.astype(np.float32)), labels


def digits_halves() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as 64-d features in [0, 1], in two random halves (898 and 899). Multiples of 1/16,
    so exact in float32 even with 1000 added."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:898]], x[order[898:]]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch and one BLAS/OpenMP thread: these small problems gain nothing from more, and on a shared CPU
    the k-means loops (thousands of tiny ops) ran ~80x slower with 2 threads competing with another process."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_fake() -> tuple[torch.Tensor, torch.Tensor]:
    return features(1000, 32, seed=1), features(1000, 32, seed=2, shift=0.5)


# ---------------------------------------------------------------------------------------------- FID

def test_fid_matches_scipy_sqrtm(real_fake):
    real, fake = real_fake
    ours, reference = M.frechet_distance(real, fake), R.fid_reference(real, fake)
    assert reference > 1.0  # the sets differ, so the relative comparison means something
    assert abs(ours - reference) <= 1e-8 * reference


def test_fid_from_statistics_matches_numpy_statistics(real_fake):
    real, _ = real_fake
    mu, sigma = M.feature_statistics(real)
    assert np.allclose(mu.numpy(), real.double().numpy().mean(0), rtol=0, atol=1e-12)
    assert np.allclose(sigma.numpy(), np.cov(real.double().numpy(), rowvar=False), rtol=0, atol=1e-12)


def test_fid_of_a_set_with_itself_is_zero(real_fake):
    real, _ = real_fake
    trace = float(M.feature_statistics(real)[1].trace())
    assert 0.0 <= M.frechet_distance(real, real) < 1e-6 * trace


def test_fid_is_symmetric(real_fake):
    real, fake = real_fake
    forward, backward = M.frechet_distance(real, fake), M.frechet_distance(fake, real)
    assert abs(forward - backward) <= 1e-9 * forward


@pytest.mark.parametrize("n_1, n_2", [(20, 40), (40, 20), (30, 30), (30, 80), (80, 30)])
def test_fid_with_fewer_samples_than_dimensions_matches_scipy(n_1, n_2):
    # 64 dims: both sets below 64 samples take the n x n (singular values) route; with one set above 64 the
    # d x d route meets a singular covariance (Cholesky fails for Σ1 = the 30-sample set: eigh fallback)
    a, b = features(n_1, 64, seed=3), features(n_2, 64, seed=4, shift=0.2)
    assert torch.linalg.matrix_rank(M.feature_statistics(a if n_1 < n_2 else b)[1]) < 64
    ours, reference = M.frechet_distance(a, b), R.fid_reference(a, b)
    assert abs(ours - reference) <= 1e-6 * reference


def test_fid_statistics_mismatch_raises():
    mu, sigma = torch.zeros(3), torch.eye(3)
    with pytest.raises(ValueError, match="statistics"):
        M.frechet_distance_from_statistics(mu, sigma, torch.zeros(4), torch.eye(4))


# ---------------------------------------------------------------------------------------------- KID

def test_kid_matches_reference(real_fake):
    real, fake = real_fake
    ours = M.kernel_distance(real, fake, subsets=10, subset_size=200, seed=7)
    reference = R.kid_reference(real, fake, subsets=10, subset_size=200, seed=7)
    assert reference[0] > 1e-3 and reference[1] > 0
    assert ours == pytest.approx(reference, rel=1e-6)


def test_kid_matches_torch_fidelity(real_fake):
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = real_fake
    kwargs = dict(kid_subsets=10, kid_subset_size=200, kid_kernel="poly", kid_kernel_poly_degree=3,
                  kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=11, verbose=False)
    mean, std = M.kernel_distance(real, fake, subsets=10, subset_size=200, seed=11)
    # float64 features: torch-fidelity's numpy kernels are then float64 too, so only our float32 products differ
    tf64 = kid_features_to_metric(real.double(), fake.double(), **kwargs)
    assert mean == pytest.approx(tf64["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(tf64["kernel_inception_distance_std"], rel=1e-5)
    # float32 features (torch-fidelity's real use): its kernels and their sums are float32, so its std (a small
    # difference of MMD estimates) carries ~1e-4 relative rounding; the mean still agrees to 1e-5
    tf32 = kid_features_to_metric(real, fake, **kwargs)
    assert mean == pytest.approx(tf32["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(tf32["kernel_inception_distance_std"], rel=1e-3)


def test_kid_depends_on_the_subsets(real_fake):
    real, fake = real_fake
    assert M.kernel_distance(real, fake, 5, 100, seed=1) != M.kernel_distance(real, fake, 5, 100, seed=2)


def test_kid_subset_larger_than_a_set_raises(real_fake):
    real, fake = real_fake
    with pytest.raises(ValueError, match="subset_size"):
        M.kernel_distance(real, fake[:150], subsets=2, subset_size=200)


# ---------------------------------------------------------------------------------------- Inception Score

def class_logits(n: int, seed: int, classes: int = 1008) -> torch.Tensor:
    """Logits that favour one of 50 classes per sample, with noise: an IS well above 1."""
    g = torch.Generator().manual_seed(seed)
    favoured = torch.nn.functional.one_hot(torch.randint(50, (n,), generator=g), classes).float()
    return 6 * favoured + 2 * torch.randn(n, classes, generator=g)


@pytest.mark.parametrize("n, splits", [(500, 10), (503, 10), (40, 1)])
def test_inception_score_matches_the_authors_formula_and_torch_fidelity(n, splits):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = class_logits(n, seed=n)
    mean, std = M.inception_score(logits, splits)
    ref_mean, ref_std = R.inception_score_reference(logits, splits)
    assert mean > 5 and (std > 0) == (splits > 1)
    assert (mean, std) == (pytest.approx(ref_mean, rel=1e-12), pytest.approx(ref_std, rel=1e-9, abs=1e-12))
    fidelity = isc_features_to_metric(logits, splits=splits, shuffle=False)  # its default shuffles the samples first
    assert mean == pytest.approx(fidelity["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(fidelity["inception_score_std"], rel=1e-9, abs=1e-12)


def test_inception_score_of_confident_evenly_spread_classes_is_the_number_of_classes():
    logits = 100 * torch.nn.functional.one_hot(torch.arange(1000) % 10, 1008).double()
    assert M.inception_score(logits, 10) == (pytest.approx(10.0, rel=1e-9), pytest.approx(0.0, abs=1e-9))
    assert M.inception_score(torch.zeros(100, 1008), 10) == (1.0, 0.0)  # one uniform prediction for all


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(ValueError, match="10 splits needs at least 10 samples, got 9"):
        M.inception_score(torch.rand(9, 1008), 10)
    with pytest.raises(ValueError, match="splits must be >= 1"):
        M.inception_score(torch.rand(9, 1008), 0)


# ------------------------------------------------------------------------------- improved precision/recall

@pytest.mark.parametrize("chunk_size, n", [(1, 200), (7, 600), (100_000, 1000)])
def test_precision_recall_equals_naive_full_matrices(real_fake, chunk_size, n):
    real, fake = real_fake
    real, fake = real[:n], fake[: n - 50]  # unequal sizes on purpose
    ours = M.precision_recall(real, fake, k=3, chunk_size=chunk_size)
    reference = R.precision_recall_reference(real, fake, k=3)
    assert 0.05 < reference["precision"] < 0.95 and 0.05 < reference["recall"] < 0.95  # not a trivial 0 or 1
    assert ours["precision"] == reference["precision"]  # exact: both are counts over the same samples
    assert ours["recall"] == reference["recall"]
    assert ours["f_score"] == pytest.approx(reference["f_score"], abs=1e-12)


def test_precision_recall_k_matters(real_fake):
    real, fake = real_fake
    small, large = M.precision_recall(real, fake, k=1), M.precision_recall(real, fake, k=10)
    assert small["precision"] < large["precision"] and small["recall"] < large["recall"]
    assert large["recall"] == R.precision_recall_reference(real, fake, k=10)["recall"]


def test_precision_recall_of_identical_sets_is_one(real_fake):
    real, _ = real_fake
    assert M.precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0, "f_score": 1.0}


def test_knn_metrics_ignore_a_large_common_offset():
    """A common offset leaves every distance unchanged, but float32 distances from |a|² + |b|² − 2ab lost all
    precision to it before the features were centred (digits + 1000: P/R 1.0/1.0 instead of 0.907/0.902)."""
    real, fake = digits_halves()
    exact = R.precision_recall_reference(real.double() + 1000, fake.double() + 1000)  # float64, full matrices
    assert 0.85 < exact["precision"] < 0.95 and 0.85 < exact["recall"] < 0.95
    assert M.precision_recall(real + 1000, fake + 1000) == M.precision_recall(real, fake) == exact
    nearest = R.memorization_reference(fake.double() + 1000, real.double() + 1000)
    assert M.memorization_score(fake + 1000, real + 1000) == pytest.approx(nearest, rel=1e-5)


def test_knn_radii_are_kth_neighbour_excluding_self(real_fake):
    real, _ = real_fake
    x = real[:300]
    distances = torch.cdist(x.double(), x.double()).square()
    expected = distances.sort(1).values[:, 3]  # index 0 is the sample itself
    assert torch.allclose(M.knn_radii(x, k=3, chunk_size=64).double(), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- PRD

def test_prd_from_histograms_equals_compute_prd():
    rng = np.random.default_rng(0)
    for num_bins in (2, 20, 50):
        eval_dist, ref_dist = rng.dirichlet(np.ones(num_bins)), rng.dirichlet(np.ones(num_bins))
        eval_dist[0], ref_dist[-1] = 0.0, 0.0  # empty bins, as k-means produces when a set misses a cluster
        eval_dist, ref_dist = eval_dist / eval_dist.sum(), ref_dist / ref_dist.sum()
        for num_angles in (3, 1001):
            precision, recall = M.prd_from_histograms(torch.from_numpy(eval_dist), torch.from_numpy(ref_dist),
                                                      num_angles)
            ref_precision, ref_recall = R.compute_prd_reference(eval_dist, ref_dist, num_angles)
            assert np.abs(precision.numpy() - ref_precision).max() <= 1e-12
            assert np.abs(recall.numpy() - ref_recall).max() <= 1e-12


def test_prd_from_unnormalised_histograms_raises():
    with pytest.raises(ValueError, match="normalised"):
        M.prd_from_histograms(torch.tensor([2.0, 1.0]), torch.tensor([0.5, 0.5]))


def test_prd_f_beta_matches_reference():
    rng = np.random.default_rng(1)
    precision, recall = rng.uniform(size=101), rng.uniform(size=101)
    ours = M.prd_f_beta(torch.from_numpy(precision), torch.from_numpy(recall))
    assert ours == pytest.approx(R.f_beta_pair_reference(precision, recall), abs=1e-12)


def test_prd_of_identical_sets_is_one():
    x, _ = mixture(600, list(range(10)), seed=0)
    precision, recall = M.prd(x, x.clone(), num_runs=2)
    f8, f1_8 = M.prd_f_beta(precision, recall)
    # identical histograms: at λ = tan(π/4) = 1 - 1e-16 both curves are 1, so F = 1 - 1e-10/(1 + β²) - rounding
    assert f8 == pytest.approx(1.0, abs=1e-6) and f1_8 == pytest.approx(1.0, abs=1e-6)


def test_prd_of_two_samples_of_one_distribution_is_near_one():
    a, b = features(2000, 16, seed=5), features(2000, 16, seed=6)
    f8, f1_8 = M.prd_f_beta(*M.prd(a, b, num_runs=5))
    assert f8 > 0.95 and f1_8 > 0.95


def test_prd_of_a_mode_dropping_generator_agrees_with_compare_gan():
    real, _ = mixture(1000, list(range(10)), seed=1)
    fake, _ = mixture(1000, list(range(5)), seed=2)  # half of the modes, each twice as likely
    f8, f1_8 = M.prd_f_beta(*M.prd(fake, real, num_runs=5, seed=3))
    ref_f8, ref_f1_8 = R.f_beta_pair_reference(*R.prd_reference(fake, real, num_runs=5, seed=3))
    # ideal histograms give recall at most 0.5 at precision 1: F8 = 65·0.5/64.5 = 0.504, F1/8 = 0.985
    assert f1_8 > 0.95 and f8 < 0.55
    assert abs(f8 - ref_f8) < 0.05 and abs(f1_8 - ref_f1_8) < 0.05
    # and the roles swapped: a generator that only covers the modes is all recall, no extra precision
    f8_swapped, f1_8_swapped = M.prd_f_beta(*M.prd(real, fake, num_runs=2))
    assert f8_swapped > 0.95 and f1_8_swapped < 0.55


def test_kmeans_recovers_well_separated_blobs():
    x, truth = mixture(2000, list(range(8)), seed=4, dim=8, num_modes=8)
    labels = M.kmeans(x, 8, torch.Generator().manual_seed(0))
    assert adjusted_rand_score(truth, labels.numpy()) > 0.99


def test_prd_is_seeded():
    a, b = features(300, 8, seed=1), features(300, 8, seed=2, shift=0.5)
    first, second = M.prd(a, b, num_runs=2, seed=5), M.prd(a, b, num_runs=2, seed=5)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


# ----------------------------------------------------------------------------------------- memorisation

@pytest.mark.parametrize("shape", [(300, 16), (200, 1, 8, 8)])
def test_memorization_matches_sklearn(shape):
    generator = torch.Generator().manual_seed(0)
    queries, keys = torch.rand(shape, generator=generator), torch.rand((400, *shape[1:]), generator=generator)
    assert M.memorization_score(queries, keys) == pytest.approx(R.memorization_reference(queries, keys), rel=1e-5)
    assert M.memorization_score(keys, keys, exclude_self=True) == pytest.approx(
        R.memorization_reference(keys, keys, exclude_self=True), rel=1e-5)


def test_memorization_exclude_self():
    x = torch.rand(300, 16, generator=torch.Generator().manual_seed(1))
    with_self, without_self = M.memorization_score(x, x), M.memorization_score(x, x, exclude_self=True)
    assert without_self > 0.5  # mean nearest-neighbour distance of 300 uniform points in [0, 1]^16 is ~0.9
    # an exact copy is at distance 0 up to float32 cancellation in |a|² + |b|² - 2ab (~1e-3 here, not exactly 0)
    assert with_self < 1e-3 * without_self


def test_exclude_self_needs_the_same_set():
    with pytest.raises(ValueError, match="same set"):
        M.nearest_neighbour_distances(torch.rand(10, 4), torch.rand(12, 4), exclude_self=True)


# ------------------------------------------------------------------------------------------ bad inputs

BAD_INPUT_CALLS = {
    "frechet_distance": lambda a, b: M.frechet_distance(a, b),
    "kernel_distance": lambda a, b: M.kernel_distance(a, b, subsets=2, subset_size=10),
    "precision_recall": lambda a, b: M.precision_recall(a, b),
    "prd": lambda a, b: M.prd(a, b, num_clusters=5, num_runs=1),
    "nearest_neighbour_distances": lambda a, b: M.nearest_neighbour_distances(a, b),
}


@pytest.mark.parametrize("name", list(BAD_INPUT_CALLS))
@pytest.mark.parametrize("case", ["one_dimensional", "mismatched_dims", "nan", "inf"])
def test_bad_inputs_raise_value_error(name, case):
    good = torch.rand(50, 4, generator=torch.Generator().manual_seed(0))
    bad = {"one_dimensional": torch.rand(50), "mismatched_dims": torch.rand(50, 5),
           "nan": good.clone().index_fill_(0, torch.tensor([3]), math.nan),
           "inf": good.clone().index_fill_(0, torch.tensor([7]), math.inf)}[case]
    call = BAD_INPUT_CALLS[name]
    with pytest.raises(ValueError):
        call(good, bad)
    with pytest.raises(ValueError):
        call(bad, good)


@pytest.mark.parametrize("case", ["mismatched_dims", "nan"])
def test_memorization_bad_inputs_raise_value_error(case):
    good = torch.rand(20, 1, 4, 4)
    bad = torch.rand(20, 1, 4, 5) if case == "mismatched_dims" else good.clone().fill_(math.nan)
    with pytest.raises(ValueError):
        M.memorization_score(good, bad)


def test_memorization_one_dimensional_raises_value_error():
    with pytest.raises(ValueError, match="shaped"):
        M.memorization_score(torch.rand(20), torch.rand(20, 4))


def test_prd_unequal_sizes_raises():
    with pytest.raises(ValueError, match="equal size"):
        M.prd(torch.rand(100, 4), torch.rand(120, 4))


def test_prd_needs_ten_samples_per_cluster_in_each_set():
    with pytest.raises(ValueError, match=r"20 clusters needs at least 200 samples in each set \(10 per cluster\), "
                                         r"got 150"):
        M.prd(torch.rand(150, 4), torch.rand(150, 4))
    precision, _ = M.prd(torch.rand(40, 4), torch.rand(40, 4), num_clusters=4, num_runs=1)
    assert precision.shape == (1001,)


def test_numpy_features_are_accepted_and_other_types_named():
    real, fake = features(300, 8, seed=1), features(300, 8, seed=2, shift=0.5)
    a, b = real.numpy(), fake.numpy()
    assert M.frechet_distance(a, b) == M.frechet_distance(real, fake)
    assert M.kernel_distance(a, b, 5, 100) == M.kernel_distance(real, fake, 5, 100)
    assert M.precision_recall(a, b) == M.precision_recall(real, fake)
    assert M.memorization_score(a, b) == M.memorization_score(real, fake)
    assert M.inception_score(a, 10) == M.inception_score(real, 10)
    from_numpy, from_tensors = M.prd(a, b, num_clusters=5, num_runs=1), M.prd(real, fake, num_clusters=5, num_runs=1)
    assert torch.equal(from_numpy[0], from_tensors[0])
    with pytest.raises(ValueError, match="a torch tensor or NumPy array .* got list"):
        M.frechet_distance(real.tolist(), fake)


def test_too_few_samples_raise():
    with pytest.raises(ValueError):
        M.precision_recall(torch.rand(3, 4), torch.rand(50, 4), k=3)  # k = 3 needs more than 3 samples
    with pytest.raises(ValueError):
        M.prd(torch.rand(5, 4), torch.rand(5, 4), num_clusters=20)  # 5 per set for 20 clusters
    with pytest.raises(ValueError):
        M.frechet_distance(torch.rand(1, 4), torch.rand(10, 4))


# ---------------------------------------------------------------------------------------------- benchmark

def test_metric_speed_quick(capsys):
    from benchmarks.metric_speed import main

    result = main(["--quick"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    assert set(result) == {"fid", "prd", "prc", "device", "n", "dim"}
    assert set(result["fid"]) == {"ours_s", "reference_s", "speedup", "rel_diff"}
    assert set(result["prd"]) == {"ours_s", "reference_s", "speedup", "f8_diff", "f1_8_diff", "reference_spread"}
    assert set(result["prc"]) == {"ours_s", "reference_s", "max_abs_diff", "peak_mb"}
    assert (result["n"], result["dim"]) == (2000, 256)
    assert result["fid"]["rel_diff"] < 1e-6
    assert result["prc"]["max_abs_diff"] == 0
    assert result["prd"]["f8_diff"] < 0.05 and result["prd"]["f1_8_diff"] < 0.05
    assert result["prc"]["peak_mb"] > 0
