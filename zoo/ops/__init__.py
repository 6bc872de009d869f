"""Lightning-free maths: plain torch functions and classes the models, networks and callbacks share.

- :mod:`genzoo.ops.losses`: adversarial objectives and regularisers (Wasserstein, non-saturating, least squares,
  gradient penalty, IMQ-MMD, reconstruction);
- :mod:`genzoo.ops.flat`: FlatGAN's geometry (k-vectors, Haar frames, push-forwards, flat-norm penalties);
- :mod:`genzoo.ops.ot`: the semi-discrete optimal-transport solver and AE-OT's generation geometry;
- :mod:`genzoo.ops.utils`: small torch helpers (eval mode, autocast off, seeded and isolated randomness).

Nothing here imports Lightning, a model, a callback or a datamodule (checked by the import contract in
``pyproject.toml``), so it can be used from any training loop.
"""
