"""Monte Carlo estimators of (u, σᵀ∇u) for semilinear PDEs."""

from ._base import AbstractEstimator as AbstractEstimator
from ._base import PointEstimate as PointEstimate
from ._base import gauss_legendre as gauss_legendre
from ._feynman_kac import FeynmanKac as FeynmanKac
from ._picard import MultilevelPicard as MultilevelPicard
from ._picard import default_estimator as default_estimator
