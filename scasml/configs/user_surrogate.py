"""A user-supplied surrogate for `scasml run`: the exact VB solution with a 5 % multiplicative error.

Used by the shipped config user-function.toml (beside this file; `scasml run user-function`) through

    [surrogate]
    kind = "python:user_surrogate.py:surrogate"   # relative to the config file's folder

A function taking one argument is called once with the PDE and must return u(t, x) (scalar ``t``, ``x`` of shape
``(d,)``, a scalar result, written in jax.numpy so that scasml can differentiate it); a function taking two arguments
is used as u(t, x) directly. Nothing is trained and no checkpoint is written; `scasml run` re-imports this file when
it resumes a run.

The same function calibrates your own points:

    scasml calibrate --surrogate python:configs/user_surrogate.py:surrogate --equation vb --dim 10 --points pts.csv
"""

import jax.numpy as jnp


def surrogate(pde):
    return lambda t, x: pde.exact(t, x) * (1 + 0.05 * jnp.sin(jnp.sum(x)))
