"""Packaging: the configs ship inside the package and are found by name from any folder; ``python -m scasml``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import scasml
from scasml.experiments import ConfigError, load_config, resolve_config_path
from scasml.experiments._config import available_configs, config_dirs, shipped_config_dir

PACKAGE = Path(scasml.__file__).resolve().parent


def test_configs_live_in_the_package():
    shipped = shipped_config_dir()
    assert shipped == PACKAGE / "configs"
    names = {p.stem for p in shipped.glob("*.toml")}
    assert {"quickstart", "user-function", "vb-20d", "lcd-10d", "lqg-100d", "dr-100d", "vb-gp-20d"} <= names
    assert (PACKAGE / "py.typed").is_file()


def test_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./configs here: only the shipped ones
    assert config_dirs() == [shipped_config_dir()]
    for name in ("quickstart", "quickstart.toml"):
        assert resolve_config_path(name) == shipped_config_dir() / "quickstart.toml"
    assert set(available_configs()) == {p.stem for p in shipped_config_dir().glob("*.toml")}
    config = load_config(resolve_config_path("user-function"))  # its .py file ships beside it
    assert config.surrogate.kind.startswith(f"python:{shipped_config_dir() / 'user_surrogate.py'}")
    with pytest.raises(ConfigError, match=r"^quickstrat: no such config file .*known configs: .*quickstart"):
        resolve_config_path("quickstrat")


def test_local_files_and_folders_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (shipped_config_dir() / "quickstart.toml").read_text(encoding="utf-8")
    mine = tmp_path / "elsewhere" / "mine.toml"
    mine.parent.mkdir()
    mine.write_text(text, encoding="utf-8")
    assert resolve_config_path(mine) == mine  # a file path, absolute
    assert resolve_config_path("elsewhere/mine.toml") == Path("elsewhere/mine.toml")  # or relative
    (tmp_path / "configs").mkdir()
    local = tmp_path / "configs" / "quickstart.toml"
    local.write_text(text.replace("steps = 100", "steps = 7"), encoding="utf-8")
    assert config_dirs() == [tmp_path / "configs", shipped_config_dir()]
    assert resolve_config_path("quickstart") == local  # ./configs comes before the shipped configs
    assert load_config(resolve_config_path("quickstart")).training.steps == 7
    assert resolve_config_path("vb-20d") == shipped_config_dir() / "vb-20d.toml"


def _run_module(*args, cwd):
    env = {**os.environ, "SCASML_COMPILE_CACHE": "none", "SCASML_CPU_DEVICES": "1"}
    return subprocess.run([sys.executable, "-m", "scasml", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_python_dash_m_scasml(tmp_path):
    help_ = _run_module("--help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("usage: scasml") and "run" in help_.stdout and "list" in help_.stdout
    listed = _run_module("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"configs in {shipped_config_dir()}" in listed.stdout
    assert "quickstart" in listed.stdout and "user-function" in listed.stdout and "INVALID" not in listed.stdout
