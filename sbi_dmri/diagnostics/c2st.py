"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017; used for SBI by Lueckmann et al.,
AISTATS 2021).

A classifier is trained to tell draws of A (label 0) from draws of B (label 1); its held-out accuracy
is ≈ 0.5 when the distributions are the same and → 1 as they separate. EVALUATION.md gates an
amortized posterior against a NUTS reference posterior at accuracy ≤ 0.60 on ≥ 20 voxels.

Classifier (own implementation; scikit-learn is not a dependency): features z-scored with the
pooled mean and sd, then an MLP with two tanh hidden layers of width max(16, 10·n_params) and a
logistic output, trained full-batch with Adam on the mean binary cross-entropy for a fixed number of
steps. All k folds train at once (vmapped): fold membership is a mask on the per-point loss, so
shapes are static and one compilation serves every fold. Accuracy is the mean over the k held-out
folds. Both samples should be i.i.d.: thin MCMC draws to about their effective sample size first,
or the classifier can learn the clumps of an autocorrelated chain and score above 0.5 even when the
distributions agree.

The samples are cut to the size of the smaller one so that chance accuracy is exactly 0.5.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _init_mlp(key, n_in: int, width: int):
    k1, k2, k3 = jax.random.split(key, 3)

    def dense(k, n_a, n_b):
        return jax.random.normal(k, (n_a, n_b)) / jnp.sqrt(n_a), jnp.zeros((n_b,))

    return [dense(k1, n_in, width), dense(k2, width, width), dense(k3, width, 1)]


def _logits(params, x):
    h = x
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b[None, :])
    w, b = params[-1]
    return (h @ w + b[None, :])[:, 0]


def _fold_loss(params, x, y, train_w):
    per_point = optax.sigmoid_binary_cross_entropy(_logits(params, x), y)
    return jnp.sum(per_point * train_w) / jnp.sum(train_w)


# Adam's direction as a fixed transformation; the learning rate is applied by hand so that it is a
# traced argument (a new optax.adam(lr) per call would be a new static argument and recompile).
_ADAM = optax.scale_by_adam()
_CHUNK = 50  # steps per jitted call


@jax.jit
def _train_steps(params, opt_state, x, y, train_w, lr):
    """_CHUNK Adam steps for every fold at once (params and opt_state have a leading fold axis)."""

    def one_fold(p, s, w):
        def step(carry, _):
            p, s = carry
            g = jax.grad(_fold_loss)(p, x, y, w)
            direction, s = _ADAM.update(g, s, p)
            return (jax.tree.map(lambda a, d: a - lr * d, p, direction), s), None

        (p, s), _ = jax.lax.scan(step, (p, s), None, length=_CHUNK)
        return p, s

    return jax.vmap(one_fold)(params, opt_state, train_w)


@jax.jit
def _held_out_accuracy(params, x, y, train_w):
    def one_fold(p, w):
        predicted = (_logits(p, x) > 0).astype(x.dtype)
        test_w = 1.0 - w
        return jnp.sum((predicted == y) * test_w) / jnp.sum(test_w)

    return jnp.mean(jax.vmap(one_fold)(params, train_w))


@functools.partial(jax.jit, static_argnames=("n_folds", "n_in", "width"))
def _init_folds(key, *, n_folds: int, n_in: int, width: int):
    """Initial MLP parameters and Adam state per fold (jitted: eager init costs many tiny compiles)."""
    params = jax.vmap(lambda k: _init_mlp(k, n_in, width))(jax.random.split(key, n_folds))
    return params, jax.vmap(_ADAM.init)(params)


def _cross_validated_accuracy(key, x, y, fold, *, n_folds: int, width: int, n_steps: int, lr: float):
    """Mean held-out accuracy over folds. x (n, p) z-scored, y (n,) in {0, 1}, fold (n,) in 0..n_folds-1.

    Training runs in jitted chunks of _CHUNK steps (n_steps is rounded up to a multiple): one scan
    over all steps would compile a new program for every n_steps, and compiling is the dominant
    cost at these sizes.
    """
    train_w = (fold[None, :] != jnp.arange(n_folds)[:, None]).astype(x.dtype)  # (n_folds, n)
    params, opt_state = _init_folds(key, n_folds=n_folds, n_in=x.shape[1], width=width)
    lr = jnp.asarray(lr, x.dtype)
    for _ in range(-(-n_steps // _CHUNK)):
        params, opt_state = _train_steps(params, opt_state, x, y, train_w, lr)
    return _held_out_accuracy(params, x, y, train_w)


def c2st(
    samples_a,
    samples_b,
    *,
    seed: int = 0,
    folds: int = 5,
    n_steps: int = 500,
    learning_rate: float = 1e-2,
    width: int | None = None,
) -> float:
    """Held-out classification accuracy between samples_a (n_a, n_params) and samples_b (n_b, n_params).

    0.5: indistinguishable; 1.0: perfectly separated. Same units for both samples (they are z-scored
    jointly). Deterministic for a given seed (shuffling, fold split and initialisation).
    """
    a = np.asarray(samples_a, np.float32)
    b = np.asarray(samples_b, np.float32)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (n_a, p) and (n_b, p) samples, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < 2 * folds:
        raise ValueError(f"need at least {2 * folds} draws per sample for {folds} folds, got {n}")
    a = a[rng.permutation(len(a))[:n]]
    b = b[rng.permutation(len(b))[:n]]
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.float32)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    # stratified folds: each fold holds the same number of A and B points (±1)
    fold = np.concatenate([rng.permutation(n) % folds, rng.permutation(n) % folds])
    width = width or max(16, 10 * x.shape[1])
    acc = _cross_validated_accuracy(
        jax.random.PRNGKey(seed),
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.asarray(fold),
        n_folds=folds,
        width=width,
        n_steps=n_steps,
        lr=learning_rate,
    )
    return float(acc)
