"""Reproducible experiments: TOML configs → cached, resumable runs → metrics, statistics, figures, report.

    config = load_config("configs/quickstart.toml", overrides=["training.steps=500"])
    report = run_experiment(config, "runs/quickstart")     # resumes if interrupted
    print(report.table, report.summary)
    render_report(RunDirectory.open("runs/quickstart"))    # re-render without recomputing

The command line front end is ``scasml`` (``scasml.cli``).
"""

from ._config import ExperimentConfig as ExperimentConfig
from ._config import Method as Method
from ._config import apply_overrides as apply_overrides
from ._config import config_dirs as config_dirs
from ._config import config_from_dict as config_from_dict
from ._config import load_config as load_config
from ._config import resolve_config_path as resolve_config_path
from ._points import PointsFileError as PointsFileError
from ._points import points_dim as points_dim
from ._points import read_points as read_points
from ._points import write_predictions as write_predictions
from ._report import Report as Report
from ._report import render_report as render_report
from ._rundir import RunDirectory as RunDirectory
from ._rundir import RunDirectoryError as RunDirectoryError
from ._runner import run_experiment as run_experiment
from ._schema import ConfigError as ConfigError
from ._statistics import mean_interval as mean_interval
from ._statistics import paired_t_test as paired_t_test
from ._statistics import t_quantile as t_quantile
