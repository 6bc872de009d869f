"""Straightforward NumPy / SciPy / scikit-learn reference implementations of the sample-quality metrics, written
the way the original papers' code computes them, to check ``genzoo.evaluation.metrics`` against (tests) and to time it
against (``benchmarks.metric_speed``). They favour obviousness over speed or memory: full distance matrices,
a general matrix square root, one scikit-learn k-means per PRD run.

Every function takes NumPy arrays or tensors ``(N, d)`` and computes in float64.

* FID: pytorch-fid / TTUR (``scipy.linalg.sqrtm`` with pytorch-fid's 1e-6·I fallback, real part).
* KID: Binkowski et al. / torch-fidelity (same subset sampling, unbiased MMD², mean and population std).
* Inception Score: Salimans et al.'s ``inception_score.py`` (softmax, KL to each split's marginal via SciPy).
* Improved precision/recall: Kynkäänniemi et al. (k-th nearest neighbour radii on full distance matrices).
* PRD: Sajjadi et al., google/compare_gan ``compare_gan/metrics/prd_score.py``.
* Memorisation: FlexAE's mean distance to the nearest neighbour (scikit-learn ``NearestNeighbors``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
import sklearn.cluster
from sklearn.neighbors import NearestNeighbors


def _as_array(features) -> np.ndarray:
    if hasattr(features, "detach"):  # a torch tensor
        features = features.detach().cpu().numpy()
    return np.asarray(features, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- FID

def fid_reference(features_1, features_2, eps: float = 1e-6) -> float:
    """Fréchet distance as pytorch-fid's ``calculate_frechet_distance``: ``np.cov`` statistics, ``sqrtm(Σ1 Σ2)``
    (retried with ``eps·I`` added to both covariances if the result is not finite), real part."""
    a, b = _as_array(features_1), _as_array(features_2)
    mu_1, mu_2 = a.mean(0), b.mean(0)
    sigma_1, sigma_2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma_1 @ sigma_2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma_1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma_1 + offset) @ (sigma_2 + offset))
    covmean = np.real(covmean)
    diff = mu_1 - mu_2
    return float(diff @ diff + np.trace(sigma_1) + np.trace(sigma_2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------------- KID

def kid_reference(features_1, features_2, subsets: int, subset_size: int, degree: int = 3,
                  gamma: float | None = None, coef0: float = 1.0, seed: int = 2020) -> tuple[float, float]:
    """KID: mean and ``np.std`` over ``subsets`` of the unbiased MMD² with the kernel ``(γ xᵀy + coef0)^degree``;
    each subset draws ``subset_size`` rows of set 1 then of set 2 with ``RandomState(seed).choice`` without
    replacement (torch-fidelity's sampling)."""
    a, b = _as_array(features_1), _as_array(features_2)
    if subset_size > min(len(a), len(b)):
        raise ValueError(f"subset_size {subset_size} is larger than a set ({len(a)}, {len(b)})")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    m = subset_size
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T * gamma + coef0) ** degree
        k_yy = (y @ y.T * gamma + coef0) ** degree
        k_xy = (x @ y.T * gamma + coef0) ** degree
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        mmds[i] = within - 2 * k_xy.sum() / (m * m)
    return float(np.mean(mmds)), float(np.std(mmds))


# ---------------------------------------------------------------------------------------- Inception Score

def inception_score_reference(logits, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) on each of ``splits`` consecutive parts (p(y): the part's mean softmax),
    mean and ``np.std`` over the parts, as Salimans et al.'s ``get_inception_score``; KL by ``scipy.stats.entropy``."""
    p = scipy.special.softmax(_as_array(logits), axis=1)
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = scipy.stats.entropy(part, part.mean(0, keepdims=True), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ------------------------------------------------------------------------------- improved precision/recall

def full_squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The whole ``(len(a), len(b))`` matrix of squared Euclidean distances in float64 (BLAS expansion, as
    scikit-learn's ``euclidean_distances``; ``scipy.spatial.distance.cdist`` is exact too but ~10x slower)."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0)


def precision_recall_reference(real, fake, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with full N×N distance matrices: each sample's
    radius is the squared distance to its k-th nearest neighbour in its own set (itself excluded, i.e. the
    (k+1)-th smallest entry of its row, ``np.partition(d, k)[:, k]`` as kynkaat's code); precision is the fraction
    of fake samples within the radius of at least one real sample, recall the same with the roles swapped."""
    real, fake = _as_array(real), _as_array(fake)

    def radii(x: np.ndarray) -> np.ndarray:
        d = full_squared_distances(x, x)
        np.fill_diagonal(d, 0.0)
        return np.partition(d, k, axis=1)[:, k]

    real_radii, fake_radii = radii(real), radii(fake)
    fake_to_real = full_squared_distances(fake, real)  # (n_fake, n_real)
    precision = float((fake_to_real <= real_radii[None, :]).any(1).mean())
    recall = float((fake_to_real <= fake_radii[:, None]).any(0).mean())
    f_score = 2 * precision * recall / max(precision + recall, 1e-5)
    return {"precision": precision, "recall": recall, "f_score": f_score}


# ---------------------------------------------------------------------------------------------- PRD

def compute_prd_reference(eval_dist, ref_dist, num_angles: int = 1001,
                          epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """compare_gan's ``compute_prd``: α(λ) = Σ min(λ·ref, eval), β(λ) = α(λ)/λ, λ = tan(linspace(ε, π/2 − ε)),
    with the msmsajjadi copy's final check and clip to [0, 1] (without it the F-score check below can trip on
    1 + 1e-16)."""
    if not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon must be in (0, 0.1), got {epsilon}")
    if not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be in [3, 1e6], got {num_angles}")
    angles = np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles)
    slopes = np.tan(angles)
    precision = np.minimum(np.asarray(ref_dist)[None, :] * slopes[:, None], np.asarray(eval_dist)[None, :]).sum(1)
    recall = precision / slopes
    # msmsajjadi/precision-recall-distributions' copy: rounding can leave 1 + 1e-16, so check loosely and clip
    if precision.max() > 1.001 or recall.max() > 1.001:
        raise ValueError("PRD above 1: the histograms are not normalised distributions")
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def prd_reference(eval_features, ref_features, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
                  seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """compare_gan's ``compute_prd_from_embedding``: per run, cluster [eval; ref] with
    ``MiniBatchKMeans(n_clusters, n_init=10)`` (today's scikit-learn defaults otherwise), histogram each set's
    labels (``density=True``), ``compute_prd``; average the curves over runs. ``seed`` None: unseeded as the
    original; an int: run ``i`` uses ``random_state=seed + i``."""
    eval_data, ref_data = _as_array(eval_features), _as_array(ref_features)
    if len(eval_data) != len(ref_data):
        raise ValueError(f"eval and ref must have the same size, got {len(eval_data)} and {len(ref_data)}")
    precisions, recalls = [], []
    for run in range(num_runs):
        kmeans = sklearn.cluster.MiniBatchKMeans(n_clusters=num_clusters, n_init=10,
                                                 random_state=None if seed is None else seed + run)
        labels = kmeans.fit(np.vstack([eval_data, ref_data])).labels_
        eval_labels, ref_labels = labels[:len(eval_data)], labels[len(eval_data):]
        eval_dist = np.histogram(eval_labels, bins=num_clusters, range=[0, num_clusters], density=True)[0]
        ref_dist = np.histogram(ref_labels, bins=num_clusters, range=[0, num_clusters], density=True)[0]
        precision, recall = compute_prd_reference(eval_dist, ref_dist, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    return np.mean(precisions, axis=0), np.mean(recalls, axis=0)


def f_beta_pair_reference(precision, recall, beta: float = 8) -> tuple[float, float]:
    """compare_gan's ``prd_to_max_f_beta_pair``: (max F_β, max F_1/β), F_β = (1+β²)pr / (β²p + r + 1e-10)."""
    precision, recall = _as_array(precision), _as_array(recall)
    if not ((precision >= 0).all() and (precision <= 1).all() and (recall >= 0).all() and (recall <= 1).all()):
        raise ValueError("precision and recall must be in [0, 1]")

    def f_beta(b: float) -> float:
        return float(np.max((1 + b ** 2) * precision * recall / (b ** 2 * precision + recall + 1e-10)))

    return f_beta(beta), f_beta(1 / beta)


# ----------------------------------------------------------------------------------------- memorisation

def memorization_reference(queries, keys, exclude_self: bool = False) -> float:
    """Mean Euclidean distance from each query to its nearest key (rows flattened). ``exclude_self``: queries are
    the keys and each point's match with itself is skipped (scikit-learn's ``kneighbors()`` without a query set)."""
    q, k = _as_array(queries), _as_array(keys)
    q, k = q.reshape(len(q), -1), k.reshape(len(k), -1)
    if exclude_self and not np.array_equal(q, k):
        raise ValueError("exclude_self needs queries and keys to be the same set")
    index = NearestNeighbors(n_neighbors=1).fit(k)
    distances = index.kneighbors(n_neighbors=1)[0] if exclude_self else index.kneighbors(q, n_neighbors=1)[0]
    return float(distances[:, 0].mean())
