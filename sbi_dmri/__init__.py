"""sbi_dmri: amortized simulation-based inference of tissue microstructure from diffusion MRI.

Units inside the package (see `sbi_dmri.units`): length µm, time ms, gradient mT/m,
b-value ms/µm², diffusivity µm²/ms, permeability µm/ms.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_pretrained"]


def __getattr__(name):
    # Lazy: `import sbi_dmri` (and the CLI's start-up) stays free of flax/orbax until needed.
    if name == "load_pretrained":
        from .pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'sbi_dmri' has no attribute {name!r}")
