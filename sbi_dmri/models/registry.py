"""The registry: every compartment and tissue model by name, so configs, checkpoints and the CLI
refer to models by name. Modules register factories at import; `sbi_dmri.models` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Model

_FACTORIES: dict[str, Callable[..., Model]] = {}
_KINDS: dict[str, str] = {}


def register(name: str, kind: str = "compartment"):
    """Decorator registering a zero-argument (or keyword-only) factory that builds the model.

    Args:
        name: registry name.
        kind: "compartment" or "tissue" (for listings).
    """

    def deco(factory: Callable[..., Model]) -> Callable[..., Model]:
        if name in _FACTORIES:
            raise ValueError(f"model name {name!r} registered twice")
        _FACTORIES[name] = factory
        _KINDS[name] = kind
        return factory

    return deco


def get(name: str, **options) -> Model:
    """Build the registered model `name` (options go to its factory, e.g. fixed values)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}") from None
    model = factory(**options)
    if model.name != name:
        raise RuntimeError(f"factory for {name!r} built a model named {model.name!r}")
    return model


def available(kind: str | None = None) -> list[str]:
    """Sorted registry names, optionally only one kind ("compartment" or "tissue")."""
    return sorted(n for n in _FACTORIES if kind is None or _KINDS[n] == kind)


def kind_of(name: str) -> str:
    return _KINDS[name]
