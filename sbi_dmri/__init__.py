"""sbi_dmri: amortized simulation-based inference of tissue microstructure from diffusion MRI.

Units inside the package (see `sbi_dmri.units`): length µm, time ms, gradient mT/m,
b-value ms/µm², diffusivity µm²/ms, permeability µm/ms.
"""

__version__ = "0.1.0"
