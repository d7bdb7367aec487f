"""Amortized inference networks (Flax NNX): protocol features, parameter space, set/MLP encoders,
conditional normalizing flows, the AmortizedPosterior with its point head, and the Posterior API.

Contract with `sbi_dmri.training` and `sbi_dmri.inference`: docs/network_contract.md.
"""

from .amortized import AmortizedPosterior as AmortizedPosterior
from .amortized import ApplyFns as ApplyFns
from .amortized import apply_fns as apply_fns
from .encoders import MLPEncoder as MLPEncoder
from .encoders import SeparableSetEncoder as SeparableSetEncoder
from .encoders import SetEncoder as SetEncoder
from .features import FEATURE_DIM as FEATURE_DIM
from .features import pad_measurements as pad_measurements
from .features import protocol_features as protocol_features
from .features import protocol_features_from_arrays as protocol_features_from_arrays
from .flows import ConditionalFlow as ConditionalFlow
from .parameter_space import ParameterSpace as ParameterSpace
from .parameter_space import dti_frame as dti_frame
from .parameter_space import identity_frames as identity_frames
from .posterior import Posterior as Posterior
