"""Surrogates: PINNs, wrapped functions, training and checkpoints."""

from ._base import AbstractSurrogate as AbstractSurrogate
from ._base import FunctionSurrogate as FunctionSurrogate
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import load as load
from ._checkpoint import read_header as read_header
from ._checkpoint import register_architecture as register_architecture
from ._checkpoint import save as save
from ._pinn import PINN as PINN
from ._training import TrainingLog as TrainingLog
from ._training import physics_loss as physics_loss
from ._training import train as train
