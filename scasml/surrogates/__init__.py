"""Surrogates: PINNs, wrapped functions, training and checkpoints."""

# Gaussian-process (kernel collocation) surrogate and bring-your-own-surrogate adapters (issue #8). Appended
# unsorted; on merge, sort them into the block above (`ruff check --fix`) and drop the next line.
from ._adapters import EquinoxSurrogate as EquinoxSurrogate
from ._adapters import FlaxSurrogate as FlaxSurrogate
from ._adapters import SurrogateError as SurrogateError
from ._adapters import as_surrogate as as_surrogate
from ._adapters import check_surrogate as check_surrogate
from ._base import AbstractSurrogate as AbstractSurrogate
from ._base import FunctionSurrogate as FunctionSurrogate
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import load as load
from ._checkpoint import read_header as read_header
from ._checkpoint import register_architecture as register_architecture
from ._checkpoint import save as save
from ._foreign import MLPSurrogate as MLPSurrogate
from ._foreign import WeightFileError as WeightFileError
from ._foreign import load_mlp_weights as load_mlp_weights
from ._foreign import read_tensors as read_tensors
from ._gp import AbstractKernel as AbstractKernel
from ._gp import GaussianKernel as GaussianKernel
from ._gp import GPFitLog as GPFitLog
from ._gp import GPSurrogate as GPSurrogate
from ._gp import Matern52Kernel as Matern52Kernel
from ._gp import fit_gp as fit_gp
from ._gp import select_lengthscale as select_lengthscale
from ._pinn import PINN as PINN
from ._training import TrainingLog as TrainingLog
from ._training import physics_loss as physics_loss
from ._training import train as train
