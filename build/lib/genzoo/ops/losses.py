"""Adversarial objectives and regularisers as plain functions (no Lightning), shared by every method.

Sign convention: critics score real data high. ``wasserstein_critic_loss`` is the negative of the
Wasserstein estimate E[D(real)] - E[D(fake)], which is what gets logged as ``train/wasserstein``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return fake_scores.float().mean() - real_scores.float().mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.float().mean()


def nonsaturating_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Goodfellow et al.'s discriminator loss, BCE with logits: −log σ(D(x)) − log(1 − σ(D(G(z))))."""
    bce = nn.functional.binary_cross_entropy_with_logits
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss −log σ(D(G(z)))."""
    fake_logits = fake_logits.float()
    return nn.functional.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def least_squares_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al., a-b-c = 0-1-1) without the ½ factors, as the OC-GAN code: E(D(x)−1)² + E D(G(z))²."""
    return (real_scores.float() - 1).square().mean() + fake_scores.float().square().mean()


def least_squares_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return (fake_scores.float() - 1).square().mean()


def hinge_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018, Eq. 16): E max(0, m − D(x)) +
    E max(0, m + D(G(z))). Scores beyond the margin give no gradient; the generator minimises −E D(G(z))."""
    return torch.relu(margin - real_scores.float()).mean() + torch.relu(margin + fake_scores.float()).mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample random points on the segments between real and fake samples (alpha ~ U[0, 1])."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    if alpha is None:
        alpha = torch.rand(len(real), device=real.device)
    return mix(real.detach(), fake.detach(), alpha)


def mix(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample convex combinations weight·a + (1 − weight)·b (differentiable in a and b)."""
    weight = weight.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
    return weight * a + (1 - weight) * b


def input_gradients(critic: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                    loss_scale: float | None = None) -> torch.Tensor:
    """d critic / d input at ``points``, flattened per sample, in float32 and differentiable (create_graph).

    Under fp16 AMP the backward is seeded with the GradScaler's scale so small gradients don't underflow,
    then unscaled in fp32: PyTorch's AMP gradient-penalty recipe. Without it the penalty would see
    gradients multiplied by ~65536. With bf16 or fp32, ``loss_scale`` is None.
    """
    points = points.detach().requires_grad_(True)
    scores = critic(points)
    seed = scores.float().sum()
    if loss_scale is not None:
        seed = seed * loss_scale
    (grads,) = torch.autograd.grad(seed, points, create_graph=True)
    grads = grads.float().flatten(1)
    if loss_scale is not None:
        grads = grads / loss_scale
    return grads


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None, target: float = 1.0, eps: float = 1e-12,
                     loss_scale: float | None = None) -> torch.Tensor:
    """WGAN-GP's two-sided penalty mean((||∇D(x̂)||₂ − target)²) at random interpolates x̂ (Gulrajani et al.,
    Eq. 3). The norm is per sample over all non-batch dimensions; ``eps`` inside the square root keeps its
    gradient finite where the critic's gradient vanishes."""
    grads = input_gradients(critic, interpolate(real, fake, alpha), loss_scale)
    norms = torch.sqrt(grads.pow(2).sum(1) + eps)
    return (norms - target).pow(2).mean()


@torch.no_grad()
def clip_parameters_(module: nn.Module, bound: float) -> None:
    """WGAN's weight clipping: every parameter (biases and norm affines included) into [-bound, bound]."""
    for p in module.parameters():
        p.clamp_(-bound, bound)


def reconstruction_sse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared errors, averaged over the batch (FlexAE's L_AE, Eq. 5; WAE's ``l2sq``)."""
    return (x.float() - x_hat.float()).square().flatten(1).sum(1).mean()


WAE_IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_mmd(q: torch.Tensor, p: torch.Tensor, prior_variance: float = 1.0,
            scales: tuple[float, ...] = WAE_IMQ_SCALES) -> torch.Tensor:
    """WAE-MMD's estimate of MMD²(Q_z, P_z) with the inverse multiquadratic kernel k(a, b) = C / (C + ‖a − b‖²),
    summed over C = 2·d·σ²·s for each scale s (wae.py L233-310): within-set terms are U-statistics (diagonal
    excluded, divided by n(n − 1)), the cross term is 2/n² Σ k(q, p)."""
    if q.shape != p.shape or q.dim() != 2 or len(q) < 2:
        raise ValueError(f"imq_mmd needs two (n >= 2, d) batches of one shape, got {tuple(q.shape)}, {tuple(p.shape)}")
    q, p = q.float(), p.float()
    n, d = q.shape
    off_diagonal = 1 - torch.eye(n, device=q.device)
    within = [_squared_distances(a, a) for a in (q, p)]
    cross = _squared_distances(q, p)
    total = q.new_zeros(())
    for scale in scales:
        c = 2 * d * prior_variance * scale
        same = sum(((c / (c + dist)) * off_diagonal).sum() for dist in within) / (n * (n - 1))
        total = total + same - 2 * (c / (c + cross)).sum() / (n * n)
    return total


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # the expanded form, as the WAE code: no square root, so gradients stay finite at zero distance
    return (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2 * a @ b.T).clamp_min(0)
