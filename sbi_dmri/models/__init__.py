"""Models: compartments and tissue models, each registered by name.

>>> from sbi_dmri import models
>>> models.available()          # every registered name
>>> m = models.get("ball_stick")
>>> m.parameter_names, m.bounds, m.units, m.prior
"""

from .base import Compartment as Compartment
from .base import Model as Model
from .base import Parameter as Parameter
from .composite import MultiCompartmentModel as MultiCompartmentModel
from .composite import tortuosity as tortuosity
from .registry import available as available
from .registry import get as get
from .registry import register as register

# Importing a module registers its models.
from . import gaussian  # noqa: E402,F401
from . import tissue  # noqa: E402,F401
from . import dispersed  # noqa: E402,F401
from . import restricted  # noqa: E402,F401
