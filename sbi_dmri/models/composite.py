"""Composition: multi-compartment tissue models from compartments, fractions and constraints.

    E = Σ_k w_k E_k(acquisition, θ_k)

Parameter names are global: a name used by several compartments is ONE shared parameter (the
stick's and zeppelin's `orientation` are the same axis); `rename={"zeppelin.d_par": "d_par_ec"}`
separates them. By default the weights are volume fractions on the simplex: free parameters
`f_<label>` for every compartment but the last, whose fraction is 1 − Σ. A model may instead give
its own `weights` function of its own fraction parameters (NODDI's f_iso and ndi).

Constraints remove parameters from the free set:
- `fixed={"d_iso": 3.0}`: a constant;
- `tied={"d_perp": "d_par"}`: equal to another parameter;
- `derived={"d_perp": tortuosity(...)}`: any function of the other parameters, evaluated in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from ..acquisition import Acquisition
from ..priors import Prior
from .base import Model, Parameter, Params, default_prior

Derivation = Callable[[dict[str, jax.Array]], jax.Array]


def tortuosity(d_par: str = "d_par", f_intra: str = "f_stick", f_extra: str | None = None) -> Derivation:
    """d_perp = d_par (1 − ν), ν = f_intra, or f_intra / (f_intra + f_extra) when `f_extra` is given
    (the intra-axonal fraction of the non-free-water tissue; Szafer et al. 1995, Zhang et al. 2012)."""

    def derive(p):
        nu = p[f_intra]
        if f_extra is not None:
            tot = p[f_intra] + p[f_extra]
            nu = jnp.where(tot > 0, nu / jnp.where(tot > 0, tot, 1.0), 0.0)
        return p[d_par] * (1.0 - nu)

    return derive


class MultiCompartmentModel(Model):
    """A weighted sum of compartments.

    Args:
        name: registry name.
        compartments: label → compartment model, in summation order.
        fixed, tied, derived: constraints (see module docstring).
        rename: "label.param" → global name, to keep same-named parameters apart.
        bounds: name → (lower, upper) overriding the compartments' bounds.
        weights: optional function of the resolved parameters returning label → weight; when given,
            `weight_parameters` are its free parameters and no simplex fractions are made.
        weight_parameters: the free parameters of `weights`.
        prior: overrides the default prior (uniform boxes, uniform axes, Dirichlet(1) fractions).
        description: one line with the reference.
    """

    def __init__(
        self,
        name: str,
        compartments: Mapping[str, Model],
        *,
        fixed: Mapping[str, float] | None = None,
        tied: Mapping[str, str] | None = None,
        derived: Mapping[str, Derivation] | None = None,
        rename: Mapping[str, str] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        weights: Callable[[dict[str, jax.Array]], Mapping[str, jax.Array]] | None = None,
        weight_parameters: tuple[Parameter, ...] = (),
        prior: Prior | None = None,
        description: str = "",
    ):
        if not compartments:
            raise ValueError("a multi-compartment model needs at least one compartment")
        self.name, self.description = name, description
        self.compartments = dict(compartments)
        self.fixed = {k: float(v) if jnp.ndim(v) == 0 else jnp.asarray(v) for k, v in (fixed or {}).items()}
        self.tied = dict(tied or {})
        self.derived = dict(derived or {})
        self._weights_fn = weights
        rename = dict(rename or {})

        # Map every compartment parameter to its global name; collect one spec per global name.
        self._maps: dict[str, dict[str, str]] = {}
        specs: dict[str, Parameter] = {}
        for label, comp in self.compartments.items():
            m = {}
            for p in comp.parameters:
                g = rename.pop(f"{label}.{p.name}", p.name)
                m[p.name] = g
                if g in specs and specs[g].kind != p.kind:
                    raise ValueError(f"{name}: parameter {g!r} is shared by compartments of different kinds")
                specs.setdefault(g, p.renamed(g))
            self._maps[label] = m
        if rename:
            raise ValueError(f"{name}: rename refers to unknown compartment parameters {sorted(rename)}")

        labels = list(self.compartments)
        if weights is None and len(labels) > 1:
            self._fraction_names = tuple(f"f_{lbl}" for lbl in labels)
            for f in self._fraction_names[:-1]:
                specs[f] = Parameter(f, "", 0.0, 1.0, kind="fraction", description="volume fraction")
        else:
            self._fraction_names = ()
            for p in weight_parameters:
                specs[p.name] = p

        constrained = set(self.fixed) | set(self.tied) | set(self.derived)
        known = set(specs) | set(self._fraction_names)
        unknown = constrained - known
        if unknown:
            raise ValueError(f"{name}: constraints name unknown parameters {sorted(unknown)}; known: {sorted(known)}")
        for k, src in self.tied.items():
            if src not in known:
                raise ValueError(f"{name}: {k!r} is tied to unknown parameter {src!r}")
        for k, (lo, hi) in (bounds or {}).items():
            if k not in specs:
                raise ValueError(f"{name}: bounds given for unknown parameter {k!r}")
            specs[k] = specs[k].with_bounds(lo, hi)

        self.parameters = tuple(p for g, p in specs.items() if g not in constrained)
        self._prior = prior

    @property
    def fraction_names(self) -> tuple[str, ...]:
        """All simplex fractions f_<label> (the last is implied by the others); empty if custom weights."""
        return self._fraction_names

    @property
    def prior(self) -> Prior:
        if self._prior is not None:
            return self._prior
        free_fractions = tuple(f for f in self._fraction_names[:-1] if f in self.parameter_names)
        return default_prior(self.parameters, fraction_group=free_fractions)

    def resolve(self, params: Params) -> dict[str, jax.Array]:
        """All parameters, free and constrained, including every fraction/weight."""
        full = dict(params)
        full.update(self.fixed)
        if self._fraction_names:
            *free, last = self._fraction_names
            if last not in full:
                full[last] = 1.0 - sum(full[f] for f in free)
        for k, src in self.tied.items():
            full[k] = full[src]
        for k, fn in self.derived.items():
            full[k] = fn(full)
        return full

    def weights(self, full: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Compartment label → signal weight, from resolved parameters."""
        if self._weights_fn is not None:
            return dict(self._weights_fn(dict(full)))
        if self._fraction_names:
            return {lbl: full[f] for lbl, f in zip(self.compartments, self._fraction_names)}
        return {lbl: 1.0 for lbl in self.compartments}

    def compartment_params(self, label: str, full: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {local: full[g] for local, g in self._maps[label].items()}

    def compartment_signals(self, acquisition: Acquisition, params: Params) -> dict[str, jax.Array]:
        """Each compartment's unweighted signal E_k, shape (n_meas,)."""
        full = self.resolve(params)
        return {lbl: c.signal(acquisition, self.compartment_params(lbl, full)) for lbl, c in self.compartments.items()}

    def signal(self, acquisition: Acquisition, params: Params) -> jax.Array:
        full = self.resolve(params)
        w = self.weights(full)
        total = None
        for lbl, comp in self.compartments.items():
            term = w[lbl] * comp.signal(acquisition, self.compartment_params(lbl, full))
            total = term if total is None else total + term
        return total
