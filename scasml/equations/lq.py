from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._domain import Box
from .._dynamics import OrnsteinUhlenbeck
from ._base import AbstractBenchmarkPDE


class LinearQuadraticOU(AbstractBenchmarkPDE):
    """LQ-OU: a linear–quadratic control problem with Ornstein–Uhlenbeck dynamics and an exact solution.

    min over controls α of E[∫_t^T (½q‖X_s‖² + ‖α_s‖²/(2λ)) ds + ½G‖X_T‖²] with dX = (bX + sα) ds + s dW (b, s, q,
    G, λ scalars; defaults b = −0.5, s = 0.5, q = 1, G = 1, λ = 1, T = 1). Its value function solves

        ∂_t u + b x·∇u + ½s²Δu + f = 0,   f(t, x, u, z) = ½q‖x‖² − (λ/2)‖z‖²  (z = s∇u),   u(T) = ½G‖x‖²,

    and is quadratic, u = Σ_i ½P(τ)x_i² + d·log(w(τ))/(2λ) with τ = T − t, from the Riccati equation
    P' = q + 2bP − λs²P² (P(0) = G) linearised by P = w'/(λs²w):

        w(τ) = e^{bτ}(cosh κτ + β sinh κτ),   κ = √(b² + λs²q),   β = (λs²G − b)/κ

    (at κ = 0, i.e. b = q = 0, the limit w(τ) = 1 + λs²Gτ).

    Domain [−1, 1]^d. ``gradient_quadratic`` = −λ/2 lets multilevel Picard debias the ‖z‖² term."""

    rate: float = eqx.field(static=True)
    vol: float = eqx.field(static=True)
    state_cost: float = eqx.field(static=True)
    terminal_cost: float = eqx.field(static=True)
    control_weight: float = eqx.field(static=True)
    name = "lqou"

    def __init__(self, dim: int, horizon: float = 1.0, rate: float = -0.5, vol: float = 0.5,
                 state_cost: float = 1.0, terminal_cost: float = 1.0, control_weight: float = 1.0, dtype=None):
        if not (vol > 0 and control_weight > 0 and state_cost >= 0 and terminal_cost >= 0):
            raise ValueError("LinearQuadraticOU needs vol > 0, control_weight > 0 and non-negative costs; got "
                             f"vol={vol!r}, control_weight={control_weight!r}, state_cost={state_cost!r}, "
                             f"terminal_cost={terminal_cost!r}")
        dynamics = OrnsteinUhlenbeck(int(dim), offset=0.0, matrix=rate, diffusion=vol, dtype=dtype)
        super().__init__(dim, horizon, None, None, Box(-1.0, 1.0), dtype, dynamics=dynamics)
        self.rate, self.vol = float(rate), float(vol)
        self.state_cost, self.terminal_cost, self.control_weight = (float(state_cost), float(terminal_cost),
                                                                     float(control_weight))

    @property
    def gradient_quadratic(self):
        return -0.5 * self.control_weight

    def nonlinearity(self, t, x, u, z):
        return 0.5 * self.state_cost * (x @ x) - 0.5 * self.control_weight * (z @ z)

    def terminal(self, x):
        return 0.5 * self.terminal_cost * (x @ x)

    def _riccati(self, tau):
        """(w(τ), w'(τ)) of the linearised Riccati equation; at κ = 0 (b = q = 0) its limit w = 1 + λs²Gτ
        (κ is a Python number: for κ > 0, however small, β sinh κτ = (λs²G − b)·sinh(κτ)/κ is accurate)."""
        b, lam_s2 = self.rate, self.control_weight * self.vol**2
        kappa = (b**2 + lam_s2 * self.state_cost) ** 0.5
        if kappa == 0.0:
            slope = lam_s2 * self.terminal_cost
            return 1.0 + slope * tau, slope * jnp.ones_like(tau)
        beta = (lam_s2 * self.terminal_cost - b) / kappa
        c, s = jnp.cosh(kappa * tau), jnp.sinh(kappa * tau)
        growth = jnp.exp(b * tau)
        return growth * (c + beta * s), growth * (b * (c + beta * s) + kappa * (s + beta * c))

    def exact(self, t, x):
        w, dw = self._riccati(self.horizon - t)
        p = dw / (self.control_weight * self.vol**2 * w)
        return 0.5 * p * (x @ x) + self.dim * jnp.log(w) / (2 * self.control_weight)

    def extra_parameters(self):
        return {"rate": self.rate, "vol": self.vol, "state_cost": self.state_cost,
                "terminal_cost": self.terminal_cost, "control_weight": self.control_weight}
