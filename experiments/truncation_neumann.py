"""Can a point's own samples estimate its n = 2 Picard truncation? The linearised next correction, one path each.

    python experiments/truncation_neumann.py [--points 200] [--keys 64] [--samples 512] [--base 10]

On VB-20 with û = u + 0.05·sin(Σx + t) (the set-up of ``reduced_coverage.py truncation``/``deeper``), the
truncation of MultilevelPicard(2, M), e − E u_2 (e = u − û the defect), is mostly the next Picard correction
Δ3 = Φ(u_2) − Φ(u_1) ≈ DΦ·Δ2, with Φ the Picard map of the defect PDE and Δ2 = u_2 − u_1 = Φ(u_1) − Φ(0) as a
function of (s, y). DΦ·Δ2 at (t, x) is an expectation along one path with two random times t < s < r:

    Δ·[∂_v f̆(s, X_s)·Δ2(s, X_s) + ∂_w f̆(s, X_s)·σᵀ∇Δ2(s, X_s)],   s = t + Δ·V,
    Δ2(s, X_s) ≈ 2(T − s)·U·Y,  σᵀ∇Δ2(s, X_s) ≈ 2(T − s)·U·Y·N/√τ,  τ = r − s = (T − s)·U²,  X_r = X_s + μτ + σ√τ·N,
    Y = f̆(r, X_r, V_1, Z_1) − f̆(r, X_r, 0, 0),  (V_1, Z_1) = MultilevelPicard(1, M) at (r, X_r),

(Δ = T − t; ∂f̆ at (0, 0), i.e. ∂f at (û, σᵀ∇û); the time r − s drawn ∝ 1/√τ so that the Elworthy–Bismut–Li
weight N/√τ has a finite variance). The script measures the truncation point by point (exact defect − the mean
of ``keys`` MultilevelPicard(2, M) estimates), estimates DΦ·Δ2 with ``samples`` paths per point, and prints how
much of the truncation it explains and the standard deviation of one path's estimate, from which the number of
paths a per-point correction (or bound) would need follows.
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import equations


def main(points=200, keys=64, samples=512, base=10):
    pde = equations.get("vb", dim=20)
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.05 * jnp.sin(jnp.sum(x) + t))
    defect = scasml.law_of_defect(pde, surrogate)
    t, x = pde.sample_domain(jax.random.key(3), points)
    e = np.asarray(jax.vmap(defect.exact)(t, x), np.float64)
    T, d = pde.horizon, pde.dim
    mu, sigma = -(1.0 / d + pde.scale**2 / 2), pde.scale
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))

    # the truncation, measured: exact defect − the mean over keys of u_2
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "solve: the Picard truncation", RuntimeWarning)
        two = np.stack([np.asarray(scasml.solve(defect, t, x, scasml.MultilevelPicard(2, base),
                                                key=jax.random.key(1000 + k)).u, np.float64) for k in range(keys)])
    noise = two.std(0, ddof=1) / np.sqrt(keys)
    trunc = e - two.mean(0)
    print(f"measured truncation: RMS {rms(trunc):.3e} (noise in it {rms(noise):.3e}; RMS stderr of one u_2 "
          f"{rms(two.std(0, ddof=1)):.3e}); {time.perf_counter() - start:.0f} s", flush=True)

    # one path per sample: (s, X_s), then (r, X_r) with the nested first Picard iterate there
    k = jax.random.split(jax.random.key(7), 4)
    shape = (points, samples)
    v = jax.random.uniform(k[0], shape)
    u = jax.random.uniform(k[1], shape)
    n1 = jax.random.normal(k[2], shape + (d,))
    n2 = jax.random.normal(k[3], shape + (d,))
    delta = (T - t)[:, None]
    s = t[:, None] + delta * v
    xs = x[:, None, :] + mu * (delta * v)[..., None] + sigma * jnp.sqrt(delta * v)[..., None] * n1
    left = T - s
    tau = left * u**2
    r = s + tau
    xr = xs + mu * tau[..., None] + sigma * jnp.sqrt(tau)[..., None] * n2
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "solve:", RuntimeWarning)
        nested = scasml.solve(defect, r.reshape(-1), xr.reshape(-1, d), scasml.MultilevelPicard(1, base),
                              key=jax.random.key(8))
    v1, z1 = jnp.asarray(nested.u).reshape(shape), jnp.asarray(nested.z).reshape(shape + (d,))
    step = jax.vmap(jax.vmap(lambda r, y, a, b: defect.nonlinearity_increment(r, y, (a, b), None)))
    y = step(r, xr, v1, z1)
    level = 2 * left * u * y  # Δ2(s, X_s), one path
    slope = 2 * left * u * y / jnp.sqrt(tau)  # σᵀ∇Δ2(s, X_s) ÷ N
    zero = (jnp.zeros(()), jnp.zeros(d))

    def linearised(s, y, a, b):  # ∂f̆ at (0, 0) along (a, b)
        return jax.jvp(lambda p: defect.nonlinearity_increment(s, y, p, None), (zero,), ((a, b),))[1]

    one = jax.vmap(jax.vmap(linearised))(s, xs, level, slope[..., None] * n2) * delta
    one = np.asarray(one, np.float64)
    est, sd = one.mean(1), one.std(1, ddof=1)
    print(f"DΦ·Δ2 from {samples} paths per point ({time.perf_counter() - start:.0f} s): RMS {rms(est):.3e} "
          f"(noise in it {rms(sd / np.sqrt(samples)):.3e}); one path's standard deviation: RMS {rms(sd):.3e}, "
          f"median {np.median(sd):.3e}", flush=True)
    left_over = trunc - est
    print(f"truncation − DΦ·Δ2: RMS {rms(left_over):.3e} (noise in it "
          f"{np.sqrt(rms(noise) ** 2 + rms(sd / np.sqrt(samples)) ** 2):.3e}); correlation over the points "
          f"{np.corrcoef(trunc, est)[0, 1]:.2f}; regression slope {np.dot(trunc, est) / np.dot(est, est):.2f}")

    # the same from the level-1 samples themselves: r uniform on (t, T) with the nested V_1 at (r, X_r) (a level-1
    # summand Y), then K points s of the Brownian bridge from (t, x) to (r, X_r), r − s = (r − t)·U² (weight
    # 2(r − t)·U), and W_r − W_s = (X_r − X_s − μ(r − s))/σ for the Elworthy–Bismut–Li weight at s
    kb = jax.random.split(jax.random.key(9), 4)
    span = delta * (1 - jax.random.uniform(kb[0], shape))  # r − t > 0, kept apart from r (rounding near T)
    rr = t[:, None] + span
    xr = x[:, None, :] + mu * span[..., None] + sigma * jnp.sqrt(span)[..., None] * jax.random.normal(kb[1],
                                                                                                     shape + (d,))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "solve:", RuntimeWarning)
        nested = scasml.solve(defect, rr.reshape(-1), xr.reshape(-1, d), scasml.MultilevelPicard(1, base),
                              key=jax.random.key(10))
    y = step(rr, xr, jnp.asarray(nested.u).reshape(shape), jnp.asarray(nested.z).reshape(shape + (d,)))
    for bridges in (1, 4):
        ub = 1 - jax.random.uniform(jax.random.fold_in(kb[2], bridges), shape + (bridges,))  # > 0
        nb = jax.random.normal(jax.random.fold_in(kb[3], bridges), shape + (bridges, d))
        gap = span[..., None] * ub**2  # r − s
        sb = rr[..., None] - gap
        frac = 1 - ub**2  # (s − t)/(r − t)
        xb = (x[:, None, None, :] + frac[..., None] * (xr[:, :, None, :] - x[:, None, None, :])
              + sigma * jnp.sqrt(jnp.maximum(frac * gap, 0))[..., None] * nb)
        dw = (xr[:, :, None, :] - xb - mu * gap[..., None]) / (sigma * gap[..., None])
        tangent = jax.vmap(jax.vmap(jax.vmap(lambda s, y, w: linearised(s, y, jnp.ones(()), w))))(sb, xb, dw)
        h = (2 * span[..., None] * ub * tangent).mean(-1)
        one_b = np.asarray(delta * y * h, np.float64)
        est_b, sd_b = one_b.mean(1), one_b.std(1, ddof=1)
        print(f"bridge from the level-1 samples, {bridges} bridge point(s) each: RMS {rms(est_b):.3e} (noise "
              f"{rms(sd_b / np.sqrt(samples)):.3e}); one sample's standard deviation RMS {rms(sd_b):.3e}, median "
              f"{np.median(sd_b):.3e}; truncation − it: RMS {rms(trunc - est_b):.3e}, correlation "
              f"{np.corrcoef(trunc, est_b)[0, 1]:.2f}, slope {np.dot(trunc, est_b) / np.dot(est_b, est_b):.2f}; "
              f"correlation with the one-path estimate {np.corrcoef(est, est_b)[0, 1]:.2f}", flush=True)
    for paths in (8, 16, 32, 64):
        print(f"  {paths} paths per point: RMS noise of the estimate {rms(sd) / np.sqrt(paths):.3e} "
              f"(÷ RMS stderr of one u_2: {rms(sd) / np.sqrt(paths) / rms(two.std(0, ddof=1)):.2f}), "
              f"{paths * (2 * base + 2)} evaluations")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--base", type=int, default=10)
    args = parser.parse_args()
    main(args.points, args.keys, args.samples, args.base)
