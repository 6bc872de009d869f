"""Sample-quality metrics as pure functions on feature tensors ``(N, d)`` (NumPy arrays are converted).

Nothing here knows about models, extractors or Lightning: the registered metrics of :mod:`genzoo.evaluation.registry`
and users' own scripts call these on features they extracted. Every function runs on the device of
its inputs (so a GPU does the heavy lifting where there is one) and returns Python floats or CPU tensors.

Conventions follow the reference implementations (see ``docs`` in each function): FID as in torch-fidelity and
TTUR, KID as torch-fidelity (same subset sampling, so the numbers are identical for the same seed), the Inception
Score as Salimans et al., improved precision/recall as Kynkäänniemi et al. (k = 3), PRD as Sajjadi et al.
(``compare_gan``'s ``prd_score.py``), and FlexAE's memorisation scores (mean distance to the nearest neighbour).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genzoo.ops.utils import seeded


def as_features(*features: Tensor | np.ndarray, min_samples: int = 2) -> tuple[Tensor, ...]:
    """The feature sets as tensors (NumPy arrays converted), checked: 2-D, finite, equal dimensions."""
    tensors, dims = [], set()
    for f in features:
        if isinstance(f, np.ndarray):
            f = torch.from_numpy(f)
        if not isinstance(f, Tensor):
            raise ValueError(f"features must be a torch tensor or NumPy array (N, d), got {type(f).__name__}")
        if f.ndim != 2:
            raise ValueError(f"features must be 2-D (N, d), got shape {tuple(f.shape)}")
        if f.shape[0] < min_samples:
            raise ValueError(f"need at least {min_samples} samples per set, got {f.shape[0]}")
        if not torch.isfinite(f).all():
            raise ValueError("features contain NaN or inf (a diverged generator or a broken extractor)")
        dims.add(f.shape[1])
        tensors.append(f)
    if len(dims) > 1:
        raise ValueError(f"feature sets have different dimensions: {sorted(dims)}")
    return tuple(tensors)


def centred_together(*features: Tensor) -> tuple[Tensor, ...]:
    """float32 features less their common mean (taken in float64). Distances stay the same, but the float32
    expansion |a|² + |b|² − 2ab loses every digit to a large common offset (pixels + 1000) unless it is removed."""
    mean = sum(f.double().sum(0) for f in features) / sum(len(f) for f in features)
    return tuple((f.double() - mean).float() for f in features)


# ---------------------------------------------------------------------------------------------- FID

def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased (N - 1) covariance, in float64 (as ``np.cov(rowvar=False)``)."""
    (features,) = as_features(features)
    scaled = centred_scaled(features)
    return features.double().mean(0), scaled.T @ scaled


def trace_sqrt_product(sigma_1: Tensor, sigma_2: Tensor) -> Tensor:
    """``Tr sqrt(Σ1 Σ2)`` for covariance matrices, without a general matrix square root.

    With Σ1 = L Lᵀ, Σ1 Σ2 is similar to the symmetric PSD matrix Lᵀ Σ2 L, so the trace is the sum of the square
    roots of that matrix's eigenvalues: one Cholesky factorisation and one symmetric eigenvalue solve (no
    eigenvectors), against a Schur decomposition of a non-symmetric matrix for ``scipy.linalg.sqrtm``."""
    factor, info = torch.linalg.cholesky_ex(sigma_1)
    if info.item() != 0:  # singular Σ1 (fewer samples than dimensions, constant features): symmetric square root
        eigenvalues, eigenvectors = torch.linalg.eigh(sigma_1)
        factor = eigenvectors * eigenvalues.clamp_min(0).sqrt()
    product = factor.T @ sigma_2 @ factor
    eigenvalues = torch.linalg.eigvalsh((product + product.T) / 2)
    return eigenvalues.clamp_min(0).sqrt().sum()


def frechet_distance_from_statistics(mu_1: Tensor, sigma_1: Tensor, mu_2: Tensor, sigma_2: Tensor) -> float:
    """``||μ1 − μ2||² + Tr Σ1 + Tr Σ2 − 2 Tr sqrt(Σ1 Σ2)`` in float64."""
    mu_1, sigma_1, mu_2, sigma_2 = (t.double() for t in (mu_1, sigma_1, mu_2, sigma_2))
    if mu_1.shape != mu_2.shape or sigma_1.shape != sigma_2.shape or sigma_1.shape != (mu_1.numel(),) * 2:
        raise ValueError(f"statistics do not match: mu {tuple(mu_1.shape)} / {tuple(mu_2.shape)}, "
                         f"sigma {tuple(sigma_1.shape)} / {tuple(sigma_2.shape)}")
    mean_term = (mu_1 - mu_2).square().sum()
    value = mean_term + sigma_1.trace() + sigma_2.trace() - 2 * trace_sqrt_product(sigma_1, sigma_2)
    return max(float(value), 0.0)  # rounding can leave a tiny negative value for identical sets


def frechet_distance(features_1: Tensor, features_2: Tensor) -> float:
    """FID between two feature sets (symmetric; 0 for a set against itself up to rounding).

    With fewer samples than dimensions (raw pixels, VGG's 4096-d features) the covariances have low rank and
    the same value comes from n x n matrices: with Σi = AiᵀAi for the centred, scaled samples Ai,
    Tr sqrt(Σ1 Σ2) is the sum of the singular values of A1 A2ᵀ and Tr Σi = ||Ai||²."""
    features_1, features_2 = as_features(features_1, features_2)
    if max(features_1.shape[0], features_2.shape[0]) >= features_1.shape[1]:
        return frechet_distance_from_statistics(*feature_statistics(features_1), *feature_statistics(features_2))
    a_1, a_2 = (centred_scaled(f) for f in (features_1, features_2))
    mean_term = (features_1.double().mean(0) - features_2.double().mean(0)).square().sum()
    value = mean_term + a_1.square().sum() + a_2.square().sum() - 2 * torch.linalg.svdvals(a_1 @ a_2.T).sum()
    return max(float(value), 0.0)


def centred_scaled(features: Tensor) -> Tensor:
    """A with AᵀA the unbiased covariance: centred samples over sqrt(N - 1), float64."""
    f = features.double()
    return (f - f.mean(0)) / math.sqrt(f.shape[0] - 1)


# ---------------------------------------------------------------------------------------------- KID

def kernel_distance(features_1: Tensor, features_2: Tensor, subsets: int = 100, subset_size: int = 1000,
                    degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                    seed: int = 2020) -> tuple[float, float]:
    """KID (Binkowski et al.): mean and population std over ``subsets`` of the unbiased MMD² estimate with the
    polynomial kernel ``(γ xᵀy + coef0)^degree``, γ = 1/d by default.

    Subsets are drawn exactly as torch-fidelity draws them (``np.random.RandomState(seed).choice`` without
    replacement, set 1 then set 2), so the values equal torch-fidelity's ``kernel_inception_distance_*``."""
    features_1, features_2 = as_features(features_1, features_2)
    n_1, n_2 = features_1.shape[0], features_2.shape[0]
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not 2 <= subset_size <= min(n_1, n_2):
        raise ValueError(f"KID subset_size={subset_size} must be between 2 and the size of the smaller set "
                         f"({n_1} and {n_2} samples); lower subset_size or evaluate more samples")
    gamma = 1.0 / features_1.shape[1] if gamma is None else gamma
    x_all, y_all = features_1.float(), features_2.float()
    rng = np.random.RandomState(seed)
    m = subset_size
    estimates = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        x = x_all[torch.from_numpy(rng.choice(n_1, m, replace=False)).to(x_all.device)]
        y = y_all[torch.from_numpy(rng.choice(n_2, m, replace=False)).to(y_all.device)]
        # float32 products (as torch-fidelity), float64 kernel and sums
        k_xx = ((x @ x.T).double() * gamma + coef0) ** degree
        k_yy = ((y @ y.T).double() * gamma + coef0) ** degree
        k_xy = ((x @ y.T).double() * gamma + coef0) ** degree
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        estimates[i] = (within - 2 * k_xy.sum() / (m * m)).cpu()
    return float(estimates.mean()), float(estimates.std(unbiased=False))


# ---------------------------------------------------------------------------------------- Inception Score

def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) on each of ``splits`` consecutive
    parts of the samples, p(y) being that part's mean prediction; mean and population std over the parts.

    As the authors' code on the Inception logits without the fc bias (all 1008 classes), in float64; equal to
    torch-fidelity's ``isc`` without its shuffle (generated samples come in random order already)."""
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    (logits,) = as_features(logits, min_samples=1)
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"the Inception Score over {splits} splits needs at least {splits} samples, got {n}")
    log_p = logits.double().log_softmax(1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        marginal = part.exp().mean(0)
        log_marginal = marginal.clamp_min(torch.finfo(marginal.dtype).tiny).log()  # p(y) = 0: 0·log 0 is 0
        scores.append((part.exp() * (part - log_marginal)).sum(1).mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


# ------------------------------------------------------------------------------- improved precision/recall

def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``(len(a), len(b))`` by the matrix-product expansion."""
    return (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2 * a @ b.T).clamp_min_(0)


def knn_radii(features: Tensor, k: int = 3, chunk_size: int = 2048) -> Tensor:
    """Squared distance from each sample to its k-th nearest neighbour in its own set (itself excluded)."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(f"k={k} needs a set of more than k samples, got {features.shape[0]}")
    # the (k + 1)-th smallest distance in a row that includes the sample's zero distance to itself
    return torch.cat([squared_distances(chunk, features).kthvalue(k + 1, dim=1).values
                      for chunk in features.split(chunk_size)])


def fraction_in_manifold(queries: Tensor, support: Tensor, radii: Tensor, chunk_size: int = 2048) -> float:
    """Fraction of ``queries`` within the k-NN ball of at least one ``support`` sample."""
    inside = [(squared_distances(chunk, support) <= radii).any(1) for chunk in queries.split(chunk_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, chunk_size: int = 2048) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    precision: fraction of generated samples inside the real manifold (the union of k-NN balls of real samples);
    recall: fraction of real samples inside the generated manifold. Distances are computed ``chunk_size`` rows
    at a time, so memory grows with ``chunk_size · N`` instead of N²."""
    real, fake = centred_together(*as_features(real, fake, min_samples=k + 1))
    precision = fraction_in_manifold(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    recall = fraction_in_manifold(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    f_score = 2 * precision * recall / max(precision + recall, 1e-5)  # torch-fidelity's definition
    return {"precision": precision, "recall": recall, "f_score": f_score}


# ---------------------------------------------------------------------------------------------- PRD

PRD_SAMPLES_PER_CLUSTER = 10

def kmeans(x: Tensor, num_clusters: int, generator: torch.Generator, n_init: int = 10, batch_size: int = 1024,
           max_iter: int = 100, max_no_improvement: int = 10) -> Tensor:
    """Cluster labels of ``x`` by mini-batch k-means, on the device of ``x``.

    The PRD reference's clustering, scikit-learn's ``MiniBatchKMeans(n_clusters, n_init=10)`` with its defaults,
    written in torch so that it runs on the GPU: ``n_init`` greedy k-means++ seedings on a subsample of
    ``3 · batch_size`` points, the one with the lowest inertia on a second subsample kept; then mini-batch
    updates (each centre moves to the running mean of the points assigned to it) until the smoothed batch
    inertia has not improved for ``max_no_improvement`` steps or ``max_iter`` passes over the data.
    (scikit-learn also re-seeds clusters that stay nearly empty; with PRD's 20 clusters over two sets of
    thousands of samples that does not arise.)"""
    n = x.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"cannot make {num_clusters} clusters from {n} samples")
    x = x.float()
    batch_size = min(batch_size, n)  # as scikit-learn

    def subsample(size: int) -> Tensor:
        return x[torch.randperm(n, generator=generator)[:size].to(x.device)]

    init_size = min(3 * batch_size, n)
    seeds = kmeans_plus_plus(subsample(init_size), num_clusters, n_init, generator)  # (n_init, k, d)
    validation = subsample(init_size)
    inertia = squared_distances(validation, seeds.flatten(0, 1)).view(init_size, n_init, num_clusters)
    centres = seeds[inertia.min(2).values.sum(0).argmin()].clone()

    counts = torch.zeros(num_clusters, 1, dtype=x.dtype, device=x.device)
    alpha = min(2.0 * batch_size / (n + 1), 1.0)
    smoothed, best, stalled = None, math.inf, 0
    for step in range(max_iter * n // batch_size):
        batch = x[torch.randint(n, (batch_size,), generator=generator).to(x.device)]
        distances = squared_distances(batch, centres)
        batch_inertia, labels = distances.min(1)
        one_hot = torch.nn.functional.one_hot(labels, num_clusters).to(x.dtype)
        batch_counts = one_hot.sum(0).unsqueeze(1)
        counts += batch_counts
        centres += (one_hot.T @ batch - batch_counts * centres) / counts.clamp_min(1)
        if step == 0:  # the first batch's inertia measures the seeding, not the updates
            continue
        mean_inertia = float(batch_inertia.mean())
        smoothed = mean_inertia if smoothed is None else smoothed * (1 - alpha) + mean_inertia * alpha
        if smoothed < best:
            best, stalled = smoothed, 0
        else:
            stalled += 1
            if stalled >= max_no_improvement:
                break
    return torch.cat([squared_distances(chunk, centres).argmin(1) for chunk in x.split(8192)])


def kmeans_plus_plus(x: Tensor, num_clusters: int, n_init: int, generator: torch.Generator) -> Tensor:
    """``n_init`` independent greedy k-means++ seedings of ``x`` at once, as scikit-learn's: each new centre is
    the best (lowest potential) of ``2 + log k`` candidates drawn with probability proportional to the squared
    distance to the closest centre so far. Returns centres of shape ``(n_init, num_clusters, d)``."""
    n = x.shape[0]
    trials = 2 + int(math.log(num_clusters))
    rows = torch.arange(n_init, device=x.device)
    chosen = [torch.randint(n, (n_init,), generator=generator).to(x.device)]
    closest = squared_distances(x, x[chosen[0]])  # (n, n_init)
    for _ in range(1, num_clusters):
        weights = closest.T.double().cpu()
        weights[weights.sum(1) <= 0] = 1.0  # fewer distinct points than clusters: any point will do
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator).to(x.device)
        to_candidates = squared_distances(x, x[candidates.flatten()]).view(n, n_init, trials)
        updated = torch.minimum(closest.unsqueeze(2), to_candidates)
        best = updated.sum(0).argmin(1)  # (n_init,)
        chosen.append(candidates[rows, best])
        closest = updated[:, rows, best]
    return x[torch.stack(chosen, 1)]


def prd_from_histograms(eval_dist: Tensor, ref_dist: Tensor, num_angles: int = 1001,
                        epsilon: float = 1e-10) -> tuple[Tensor, Tensor]:
    """PRD curve of two discrete distributions over the same bins (Sajjadi et al. 2018, Eq. 5/Thm. 2):
    α(λ) = Σ min(λ·ref, eval), β(λ) = α(λ)/λ, over λ = tan of ``num_angles`` angles in (0, π/2)."""
    if not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be in [3, 1e6], got {num_angles}")
    eval_dist, ref_dist = eval_dist.double(), ref_dist.double()
    angles = torch.linspace(epsilon, math.pi / 2 - epsilon, num_angles, dtype=torch.float64, device=eval_dist.device)
    slopes = torch.tan(angles).unsqueeze(1)
    precision = torch.minimum(ref_dist * slopes, eval_dist).sum(1)
    recall = precision / slopes.squeeze(1)
    if float(precision.max()) > 1.001 or float(recall.max()) > 1.001:
        raise ValueError("PRD above 1: the inputs are not normalised distributions")
    return precision.clamp(0, 1).cpu(), recall.clamp(0, 1).cpu()


def prd(eval_features: Tensor, ref_features: Tensor, num_clusters: int = 20, num_angles: int = 1001,
        num_runs: int = 10, seed: int = 0) -> tuple[Tensor, Tensor]:
    """PRD curve (precision, recall) of generated ``eval_features`` against real ``ref_features``.

    Each run clusters the union of both sets into ``num_clusters`` clusters and compares the two histograms of
    cluster assignments; the curves are averaged over ``num_runs``. As the reference, both sets must have the
    same size (otherwise the cluster histograms are biased towards the larger one). Each set needs
    ``PRD_SAMPLES_PER_CLUSTER`` samples per cluster: histograms of fewer are mostly noise (the reference
    accepts as many samples as clusters)."""
    eval_features, ref_features = as_features(eval_features, ref_features)
    n = eval_features.shape[0]
    if n != ref_features.shape[0]:
        raise ValueError(f"PRD needs sets of equal size, got {n} generated and {ref_features.shape[0]} real samples")
    if n < PRD_SAMPLES_PER_CLUSTER * num_clusters:
        raise ValueError(f"PRD with {num_clusters} clusters needs at least {PRD_SAMPLES_PER_CLUSTER * num_clusters} "
                         f"samples in each set ({PRD_SAMPLES_PER_CLUSTER} per cluster), got {n}; evaluate more "
                         f"samples or lower the number of clusters")
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    generator = seeded(seed)
    union = torch.cat(centred_together(eval_features, ref_features.to(eval_features.device)))
    precisions, recalls = [], []
    for _ in range(num_runs):
        labels = kmeans(union, num_clusters, generator)
        eval_dist = torch.bincount(labels[:n], minlength=num_clusters).double() / n
        ref_dist = torch.bincount(labels[n:], minlength=num_clusters).double() / n
        precision, recall = prd_from_histograms(eval_dist, ref_dist, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    return torch.stack(precisions).mean(0), torch.stack(recalls).mean(0)


def prd_f_beta(precision: Tensor, recall: Tensor, beta: float = 8.0) -> tuple[float, float]:
    """(max F_β, max F_1/β) over the curve: F_8 is the recall-like, F_1/8 the precision-like summary."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")

    def f_beta(b: float) -> float:
        values = (1 + b ** 2) * precision * recall / (b ** 2 * precision + recall + 1e-10)
        return float(values.max())

    return f_beta(beta), f_beta(1 / beta)


# ----------------------------------------------------------------------------------------- memorisation

def nearest_neighbour_distances(queries: Tensor, keys: Tensor, exclude_self: bool = False,
                                chunk_size: int = 2048) -> Tensor:
    """Euclidean distance from each query to its nearest key. ``exclude_self``: queries and keys are the
    same set and a sample's match with itself does not count (train-vs-train)."""
    queries, keys = as_features(queries, keys, min_samples=2 if exclude_self else 1)
    if exclude_self and queries.shape != keys.shape:
        raise ValueError("exclude_self needs queries and keys to be the same set")
    queries, keys = centred_together(queries, keys)
    minima = []
    for start, chunk in zip(range(0, queries.shape[0], chunk_size), queries.split(chunk_size), strict=True):
        distances = squared_distances(chunk, keys)
        if exclude_self:
            rows = torch.arange(chunk.shape[0], device=distances.device)
            distances[rows, rows + start] = math.inf
        minima.append(distances.min(1).values)
    return torch.cat(minima).sqrt().cpu()


def memorization_score(queries: Tensor, keys: Tensor, exclude_self: bool = False) -> float:
    """FlexAE's PMS/IMS: mean distance from each query to its nearest neighbour among ``keys`` (pixels for
    PMS, extractor features for IMS). Low generated-to-train scores relative to test-to-train suggest copying."""
    queries, keys = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in (queries, keys))
    if queries.ndim < 2 or keys.ndim < 2:
        raise ValueError(f"samples must be shaped (N, ...), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    return float(nearest_neighbour_distances(queries.flatten(1), keys.flatten(1), exclude_self).double().mean())
