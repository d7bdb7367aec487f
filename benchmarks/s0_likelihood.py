"""Which likelihood of b0-normalised signals calibrates the importance-corrected posterior: a model card's
cell (same seeds and test set as `sbi_dmri.inference.model_card`), its corrected coverage under three
likelihoods of the signals y = S / (their b = 0 mean):

- exact: the package's `noise.log_likelihood_s0_marginal`, the density of y with the b = 0 scale integrated
  out (the noise of y scales with it);
- laplace: the form used until session 6, S0 integrated out under a flat prior at fixed σ, by Laplace
  around the least-squares scale (exact for Gaussian noise with σ not scaled);
- known_s0: S0 = 1 known, the signals not normalised, a plain Rician likelihood: the exact posterior of the
  test set's own generative model (the network still proposes from its normalised input).

    python benchmarks/s0_likelihood.py [--model noddi] [--protocol hardi_2shell] [--snr 10] [--sims 5000] [--draws 1000]
                                       [--seed 0] [--likelihoods laplace exact known_s0]

Prints, per likelihood, the coverage deviation from nominal (50/80/90/95 %) per θ dimension, the coverage gate,
and the median effective sample size. About 2 min per likelihood for noddi on the 2-core CPU.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np


def laplace_fixed_sigma(y, mu, sigma, kind="gaussian"):
    """The session-5 form: log p(y | s* μ, σ) + ½ log(2π σ² / Σ μ²), s* = Σ y μ / Σ μ²."""
    from sbi_dmri.noise import log_likelihood

    mu2 = jnp.maximum(jnp.sum(mu**2, axis=-1), 1e-12)
    s_star = jnp.sum(y * mu, axis=-1) / mu2
    sig = jnp.broadcast_to(jnp.asarray(sigma), mu2[..., None].shape)[..., 0]
    return log_likelihood(y, s_star[..., None] * mu, sigma, kind) + 0.5 * jnp.log(2 * jnp.pi * sig**2 / mu2)


def _raw_batch(signals, features, b0, bvalues, directions, snr=None):
    """`pretrained._build_batch` without the division by the b = 0 mean (S0 = 1 known)."""
    from sbi_dmri.networks.parameter_space import dti_frame

    mask = jnp.ones(signals.shape, bool)
    batch = {"signals": signals, "mask": mask, "protocol": features,
             "frame": dti_frame(signals, mask, bvalues, directions)}
    if snr is not None:
        batch["snr"] = snr
    return batch


@contextmanager
def likelihood(name: str):
    """Swap the likelihood (and for known_s0 the batch builder) the model card's draws use."""
    import sbi_dmri.noise as noise
    import sbi_dmri.pretrained as pretrained

    saved = noise.log_likelihood_s0_marginal, pretrained._build_batch
    if name == "laplace":
        noise.log_likelihood_s0_marginal = laplace_fixed_sigma
    elif name == "known_s0":
        noise.log_likelihood_s0_marginal = lambda y, mu, sigma, kind="gaussian": noise.log_likelihood(y, mu, sigma, kind)
        pretrained._build_batch = _raw_batch
    elif name != "exact":
        raise ValueError(name)
    try:
        yield
    finally:
        noise.log_likelihood_s0_marginal, pretrained._build_batch = saved


def main(argv=None) -> None:
    import sbi_dmri
    from sbi_dmri.diagnostics import expected_coverage
    from sbi_dmri.diagnostics.coverage import coverage_gate
    from sbi_dmri.inference.importance_correction import corrected_weights
    from sbi_dmri.inference.model_card import _theta_draws, card_test_set
    from sbi_dmri.inference.test_sets import test_set_prior
    from sbi_dmri.protocols import load_protocol
    from sbi_dmri.training.evaluation import theta_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="noddi")
    ap.add_argument("--protocol", default="hardi_2shell")
    ap.add_argument("--snr", type=float, default=10.0, choices=[10.0, 20.0, 50.0])
    ap.add_argument("--sims", type=int, default=5000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--likelihoods", nargs="*", default=["laplace", "exact", "known_s0"])
    ap.add_argument("--seed", type=int, default=0, help="test-set seed (0: the model card's)")
    args = ap.parse_args(argv)

    net = sbi_dmri.load_pretrained(args.model)
    acq = load_protocol(args.protocol)
    # seed 0: the model card's test set of this SNR (SNR index 0/1/2 of the card's 10, 20, 50)
    truth, y, k_d = card_test_set(test_set_prior(net.space, "uniform"), net.space.model, acq, args.snr,
                                  {10.0: 0, 20.0: 1, 50.0: 2}[args.snr], args.sims, args.seed)
    names = theta_names(net.space)
    print(f"{args.model}, {args.protocol}, SNR {args.snr:g}, {args.sims} simulations (seed {args.seed}), "
          f"{args.draws} corrected draws; "
          "coverage − nominal at 50/80/90/95 %")
    for name in args.likelihoods:
        with likelihood(name):
            s, t, lw = _theta_draws(net, y, acq, truth, args.draws, jax.random.fold_in(k_d, 1), args.snr, adaptive=True)
        w = np.asarray(corrected_weights(jnp.asarray(lw)), np.float64)
        cov = expected_coverage(s, t, weights=w, seed=0)
        ok = coverage_gate(cov)[0]
        dev = cov.coverage - cov.levels[:, None]
        print(f"\n{name}: coverage gate {'pass' if ok else 'FAIL'}, effective draws median "
              f"{np.median(1 / np.sum(w**2, axis=1)):.0f}")
        for j, n in enumerate(names):
            print(f"  {n:14s} " + " ".join(f"{d:+.4f}" for d in dev[:, j]))


if __name__ == "__main__":
    main()
