"""Shipped pretrained surrogates: small, self-describing, and reproducing their recorded errors exactly."""

import jax
import pytest

import scasml
from scasml._pretrained import PRETRAINED_DIR, recorded_error
from scasml.surrogates import read_header

SHIPPED = scasml.available_pretrained()
SLOW = {"lqg_100"}  # its Monte Carlo reference (1,200 points × 10⁴ samples in 100 d) takes ~1 min here


def test_every_family_has_a_pretrained_surrogate():
    expected = {"vb_10", "vb_20", "lcd_10", "lqg_100", "dr_100", "bsb_100", "lqou_100", "bsdr_100", "bsir_100"}
    assert expected <= set(SHIPPED)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SHIPPED])
def test_pretrained_reproduces_its_recorded_error(name):
    path = PRETRAINED_DIR / f"{name}.scasml"
    assert path.stat().st_size < 200_000
    training = read_header(path)["training"]
    assert {"seed", "steps", "relative_l2", "test_points", "test_seed"} <= set(training)
    equation, dim = name.rsplit("_", 1)
    surrogate, pde = scasml.pretrained(equation, dim=int(dim))
    assert pde.dim == int(dim) and pde.name == equation
    error, _ = recorded_error(surrogate, pde, training["test_points"], training["test_seed"])
    if jax.default_backend() == "cpu":
        assert error == training["relative_l2"]  # bit for bit, on the machine that recorded it
    else:  # float32 rounding of û (~1e-7 relative) moves the error by ~1e-7 / error ≤ 1e-4 relative
        assert error == pytest.approx(training["relative_l2"], rel=1e-3)


def test_unknown_pretrained_lists_the_available_ones():
    with pytest.raises(ValueError, match="vb_20"):
        scasml.pretrained("vb", dim=7)
