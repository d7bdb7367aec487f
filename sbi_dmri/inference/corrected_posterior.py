"""`CorrectedPosterior`: the importance-corrected posterior of a batch of voxels, for the Python API.

    net = sbi_dmri.load_pretrained("ball_stick")
    post = net.corrected_posterior(signals, acquisition, n_draws=1000, snr=30.0)
    post.mean(), post.std(), post.quantile([0.025, 0.975])   # weighted, constrained units
    post.sample(key, 200)                                     # equal-weight draws (systematic resampling)
    post.khat                                                 # per-voxel trust (> 0.7: few effective draws)

The draws and weights are those of `importance_correction.network_importance` (the network's draws and a
Gaussian adapted to their weights, weighted by the analytic likelihood with S0 marginalised), the same
as `sbi-dmri infer` uses by default. Summaries follow `networks.Posterior`: axes get the axial mean, and
the RMS angle (degrees) and angle quantiles about it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .importance_correction import (REDRAW_KEY, corrected_weights, likelihood_signal, needs_redraw, network_importance,
                                    pad_with_redraws, systematic_resample, weighted_summaries)


class CorrectedPosterior:
    """Importance-corrected posterior of B voxels (module docstring).

    Args:
        net: a `PretrainedPosterior` trained with a Rician or Gaussian noise model.
        signals: (B, M) raw or S/S0 signals; acquisition: the M measurements (inside the training family).
        n_draws: weighted draws per voxel (half from the network, half from the adapted Gaussian); about
            1000 are needed for calibrated intervals (benchmarks/results/importance.md), fewer for means.
        key: PRNG key of the draws (default PRNGKey(0)). snr: S0/σ, a number or (B,); None estimates it.
        min_ess: voxels with fewer effective draws than this are drawn again with 4 × n_draws draws, as
            `sbi-dmri infer --min-ess` does (0: never; calibrated intervals at SNR 50: n_draws 1000, min_ess 300).

    Attributes:
        draws: name → (B, S) or (B, S, 3) constrained draws, S = n_draws (4 × n_draws if any voxel was
        redrawn: the others padded with zero-weight copies); weights: (B, S), rows sum to 1 (truncated
        importance weights; in a voxel where all are zero, equal weights on the network's own draws);
        log_weights: (B, S); khat: (B,) PSIS Pareto k̂; sigma: (B,) σ of S/S0 used in the likelihood;
        redrawn: (B,) bool.
    """

    def __init__(self, net, signals, acquisition, *, n_draws: int = 1000, key=None, snr=None, min_ess: float = 0.0):
        from ..diagnostics.importance import pareto_khat
        from .engine import _float32_acquisition, noise_sigma

        noise = dict(net.meta.get("noise") or {})
        if noise.get("kind") not in ("rician", "gaussian"):
            raise ValueError(f"importance correction needs a Rician or Gaussian training noise model; this network "
                             f"was trained with {noise.get('kind')!r}")
        if n_draws < 25:
            raise ValueError(f"n_draws must be ≥ 25 for the Pareto k̂ trust check, got {n_draws}")
        batch = net.batch(signals, acquisition, snr)
        if "snr" in batch:
            sigma = 1.0 / batch["snr"]
        else:
            sigma = jnp.asarray(noise_sigma(np.atleast_2d(np.asarray(signals)), acquisition, noise)[0], jnp.float32)
        graphdef, state = nnx.split(net.network)
        space, acq = net.space, _float32_acquisition(acquisition)
        key = jax.random.PRNGKey(0) if key is None else key
        signal_fn = likelihood_signal(space.model, acquisition)

        def run(n):
            @jax.jit
            def f(state, batch, sigma, key):
                network = nnx.merge(graphdef, state)
                ctx = network.context(batch)
                theta, lw = network_importance(network, ctx, batch, space, acq, sigma, noise["kind"], key, n, signal_fn)
                return space.from_theta(theta, batch["frame"][:, None]), lw
            return f

        def redraw(n2):
            # the redrawn voxels keep the SNR the first pass gave them (an estimate would see only them)
            sub = net.batch(np.atleast_2d(np.asarray(signals))[red], acquisition,
                            np.asarray(batch["snr"])[red] if "snr" in batch else None)
            return run(n2)(state, sub, sigma[red], jax.random.fold_in(key, REDRAW_KEY))

        draws, lw = run(n_draws)(state, batch, sigma, key)
        self.khat = pareto_khat(np.asarray(lw, np.float64))
        self.redrawn = red = needs_redraw(lw, min_ess)
        draws, lw, counts = pad_with_redraws(draws, lw, red, redraw, n_draws)
        if red.any():
            self.khat[red] = pareto_khat(np.asarray(lw[red], np.float64))
        self.draws = jax.tree.map(jnp.asarray, draws)
        self.log_weights = jnp.asarray(lw)
        self.weights = corrected_weights(self.log_weights, counts)  # as `sbi-dmri infer` weighs them
        self.sigma = np.asarray(sigma)
        self.axis_names = space.axis_names

    def _summaries(self, q):
        return weighted_summaries(self.draws, self.weights, self.axis_names, jnp.atleast_1d(jnp.asarray(q, jnp.float32)))

    def mean(self) -> dict:
        """Weighted posterior mean (B,) per scalar; axial mean (B, 3) per axis."""
        return self._summaries(0.5)["mean"]

    def std(self) -> dict:
        """Weighted sd (B,) per scalar; RMS angle to the axial mean in degrees per axis."""
        return self._summaries(0.5)["std"]

    def quantile(self, q) -> dict:
        """Weighted q-quantiles: (B,) for scalar q, (B, len(q)) for a sequence; axes: angle quantiles (degrees)."""
        out = {k: jnp.moveaxis(v, 0, -1) for k, v in self._summaries(q)["quantiles"].items()}
        return {k: v[:, 0] for k, v in out.items()} if np.ndim(q) == 0 else out

    def sample(self, key, n: int) -> dict:
        """n equal-weight draws per voxel (systematic resampling of the weighted draws; repeats are possible)."""
        idx = systematic_resample(key, self.weights, n)
        return {k: jnp.take_along_axis(v, idx.reshape(idx.shape + (1,) * (v.ndim - 2)), axis=1)
                for k, v in self.draws.items()}
