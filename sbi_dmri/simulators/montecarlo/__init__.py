"""Monte Carlo spin simulator: the independent ground truth for every closed-form kernel.

It knows nothing of the closed forms (nothing here imports `sbi_dmri.kernels`).
"""

from .simulate import MonteCarloResult as MonteCarloResult
from .simulate import simulate as simulate
from .substrates import Cylinder as Cylinder
from .substrates import Free as Free
from .substrates import PackedCylinders as PackedCylinders
from .substrates import PackedSpheres as PackedSpheres
from .substrates import Planes as Planes
from .substrates import Sphere as Sphere
