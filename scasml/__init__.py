"""scasml: inference-time correction of machine-learned PDE solvers (SCaSML) in JAX.

Convention (terminal-value problem, z = σ(t, x)ᵀ∇u; μ, σ from the PDE's dynamics):
    ∂_t u + μ(t, x)·∇u + ½ Tr(σσᵀ(t, x) ∇²u) + f(t, x, u, σ(t, x)ᵀ∇u) = 0,    u(T, x) = g(x).
"""

from . import equations as equations
from ._adaptive import AbstractAllocation as AbstractAllocation
from ._adaptive import Budget as Budget
from ._adaptive import TargetStderr as TargetStderr
from ._adaptive import Uniform as Uniform
from ._derivatives import AbstractTraceEstimator as AbstractTraceEstimator
from ._derivatives import ExactTrace as ExactTrace
from ._derivatives import HutchinsonTrace as HutchinsonTrace
from ._derivatives import diffusion_trace as diffusion_trace
from ._derivatives import laplacian as laplacian
from ._derivatives import residual as residual
from ._derivatives import time_derivative as time_derivative
from ._derivatives import value_and_gradient as value_and_gradient
from ._domain import AbstractDomain as AbstractDomain
from ._domain import AlongPaths as AlongPaths
from ._domain import Ball as Ball
from ._domain import Box as Box
from ._domain import ScaledBox as ScaledBox
from ._dynamics import AbstractDynamics as AbstractDynamics
from ._dynamics import ConstantCoefficients as ConstantCoefficients
from ._dynamics import GeometricBrownianMotion as GeometricBrownianMotion
from ._dynamics import ItoDiffusion as ItoDiffusion
from ._dynamics import OrnsteinUhlenbeck as OrnsteinUhlenbeck
from ._pde import AbstractSemilinearPDE as AbstractSemilinearPDE
from ._pde import SemilinearPDE as SemilinearPDE

__version__ = "0.1.0"
from . import estimators as estimators
from . import surrogates as surrogates
from ._calibrate import CalibratedPrediction as CalibratedPrediction
from ._calibrate import Estimate as Estimate
from ._calibrate import calibrate as calibrate
from ._calibrate import solve as solve
from ._defect import DefectPDE as DefectPDE
from ._defect import law_of_defect as law_of_defect
from ._devices import use_every_cpu_core as use_every_cpu_core
from ._pretrained import available_pretrained as available_pretrained
from ._pretrained import pretrained as pretrained
from ._recommend import Recommendation as Recommendation
from ._recommend import recommend as recommend
from ._shrinkage import shrink as shrink
from ._shrinkage import shrink_defect as shrink_defect
from ._shrinkage import sure_threshold as sure_threshold
from ._widen import widen as widen
from .estimators import AbstractEstimator as AbstractEstimator
from .estimators import FeynmanKac as FeynmanKac
from .estimators import MultilevelPicard as MultilevelPicard
from .estimators import default_estimator as default_estimator
from .surrogates import PINN as PINN
from .surrogates import AbstractSurrogate as AbstractSurrogate
from .surrogates import CheckpointError as CheckpointError
from .surrogates import EquinoxSurrogate as EquinoxSurrogate
from .surrogates import FlaxSurrogate as FlaxSurrogate
from .surrogates import FunctionSurrogate as FunctionSurrogate
from .surrogates import GPSurrogate as GPSurrogate
from .surrogates import MLPSurrogate as MLPSurrogate
from .surrogates import WeightFileError as WeightFileError
from .surrogates import fit_gp as fit_gp
from .surrogates import load as load_surrogate  # noqa: F401
from .surrogates import load_mlp_weights as load_mlp_weights
from .surrogates import save as save_surrogate  # noqa: F401
from .surrogates import train as train
