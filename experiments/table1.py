"""Run the Table-1 configs (several `scasml run` processes at once) and summarise them beside the paper.

    python experiments/table1.py run --out runs/table1 --workers 8 --set evaluation.repetitions=5
    python experiments/table1.py summary runs/table1 --json experiments/table1.json --markdown table1.md
    python experiments/table1.py run --out runs/again --surrogates runs/table1 ...   # re-evaluate, no training
    python experiments/table1.py run ... --methods surrogate scasml_noclip scasml_sure   # a subset of the methods

`run` starts one `scasml run configs/<row>.toml` per row (default: all 16 Table-1 rows), at most ``--workers``
at a time, each with its own log in ``OUT/<row>.log``; rows still running at ``--deadline`` seconds are stopped
(a later `run` over the same folder resumes them, since `scasml run` resumes). On a GPU the processes share it;
``XLA_PYTHON_CLIENT_MEM_FRACTION`` gives each an equal share of its memory.

`summary` reads each row's metrics.json and timings.json (nothing is recomputed) into one table: surrogate,
plain MLP and SCaSML relative L2 (mean ± 95 % CI over repetitions), the improvement, the paired t-test over
repetitions, seconds and evaluation counts, next to the paper's numbers (SCIENCE.md §5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [f"lcd-{d}d" for d in (10, 20, 30, 60)] + [f"vb-{d}d" for d in (20, 40, 60, 80)] + \
    [f"lqg-{d}d" for d in (100, 120, 140, 160)] + [f"dr-{d}d" for d in (100, 120, 140, 160)]

# The paper's Table 1 (SCIENCE.md §5): surrogate, plain MLP, SCaSML relative L2, gain %, SCaSML seconds (GPU).
PAPER = {
    "lcd-10d": (5.20e-2, 2.27e-1, 2.74e-2, 47, 13.3),
    "lcd-60d": (3.13e-1, 2.39e-1, 1.32e-1, 58, 37.6),
    "vb-20d": (1.17e-2, 8.36e-2, 4.03e-3, 66, None),
    "vb-80d": (None, None, None, 16, 42.5),
    "lqg-100d": (7.97e-2, 5.63, 5.53e-2, 31, 21.3),
    "lqg-160d": (1.12e-1, 5.27, 9.94e-2, 11, 30.0),
    "dr-160d": (3.45e-2, None, 3.22e-2, 7, 86.8),
}
PAPER_FAMILY_GAINS = {"lcd": "20–57 %", "vb": "16–66 %", "lqg": "11–31 %", "dr": "7–11 %"}


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = args.rows or ROWS
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.workers > 1:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / args.workers:.3f}")
    overrides = [a for s in args.set for a in ("--set", s)]
    start = time.monotonic()
    pending, running, finished = list(rows), {}, {}
    while pending or running:
        while pending and len(running) < args.workers:
            row = pending.pop(0)
            trained = []
            if args.surrogates:  # re-evaluate the surrogate a previous run trained for this row
                checkpoint = Path(args.surrogates) / row / "checkpoint.scasml"
                if not checkpoint.is_file():
                    raise SystemExit(f"--surrogates: no {checkpoint}")
                trained = ["--set", f"surrogate.checkpoint={checkpoint.resolve()}"]
            config = ROOT / "configs" / f"{row}.toml"
            if args.methods:
                config = only_methods(config, args.methods, out / f"{row}.toml")
            cmd = [sys.executable, "-m", "scasml.cli", "run", str(config),
                   "--out", str(out / row), "-q", *overrides, *trained]
            log = open(out / f"{row}.log", "a")
            running[row] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True), log, time.monotonic())
        time.sleep(1.0)
        for row, (proc, log, began) in list(running.items()):
            code = proc.poll()
            late = args.deadline and time.monotonic() - start > args.deadline
            if code is None and late:
                os.killpg(proc.pid, signal.SIGTERM)
                code = proc.wait()
                finished[row] = "stopped at the deadline"
            elif code is None:
                continue
            else:
                finished[row] = "done" if code == 0 else f"failed ({code})"
            log.close()
            del running[row]
            print(f"{row:10s} {finished[row]:24s} {time.monotonic() - began:7.1f} s", flush=True)
    print(json.dumps(finished, indent=1))
    return 0 if all(v == "done" for v in finished.values()) else 1


def only_methods(config: Path, names, out: Path) -> Path:
    """A copy of ``config`` at ``out`` keeping only the methods ``names`` (and sweeps over those)."""
    from scasml.experiments._config import dump_toml

    raw = tomllib.loads(config.read_text())
    missing = sorted(set(names) - set(raw["methods"]))
    if missing:
        raise SystemExit(f"--methods: {config.name} has no method(s) {', '.join(missing)}")
    raw["methods"] = {k: v for k, v in raw["methods"].items() if k in names}
    swept = [m for m in raw.get("sweep", {}).get("methods", []) if m in names]
    if "sweep" in raw:
        raw["sweep"]["methods"] = swept
        if not swept:
            del raw["sweep"]["methods"]
    out.write_text(f"# {config.name} with methods {', '.join(names)} only (experiments/table1.py --methods)\n"
                   + dump_toml(raw))
    return out


def _times(record):
    """Cold = the first repetition (compilation included); warm = the median of the others."""
    if not record or not record.get("per_repetition"):
        return {"cold_seconds": None, "warm_seconds": None}
    reps = record["per_repetition"]
    return {"cold_seconds": reps[0], "warm_seconds": float(statistics.median(reps[1:])) if len(reps) > 1 else None}


def _comparison(metrics, method, baseline):
    for c in metrics["comparisons"]:
        if c["method"] == method and c["baseline"] == baseline:
            return c
    return None


def summarise(folder: Path) -> dict:
    rows = {}
    for row in ROWS:
        path = folder / row
        if not (path / "metrics.json").is_file():
            continue
        metrics = json.loads((path / "metrics.json").read_text())
        timings = json.loads((path / "timings.json").read_text()) if (path / "timings.json").is_file() else {}
        entry = {"repetitions": metrics["repetitions"], "points": metrics["points_per_repetition"],
                 "reference": metrics["reference"], "reference_mean_stderr": metrics["reference_mean_stderr"],
                 "training_seconds": timings.get("training_seconds"), "methods": {}, "comparisons": {}}
        for name, m in metrics["methods"].items():
            entry["methods"][name] = {
                "relative_l2": m["relative_l2"], "ci95": m["relative_l2_ci95"],
                "per_repetition": [r["relative_l2"] for r in m["per_repetition"]],
                "coverage": m["interval_coverage"], "evaluations": m["evaluations_per_point"],
                **_times(timings.get("methods", {}).get(name)),
            }
        for name in ("mlp", "mlp_noclip", "scasml", "scasml_noclip", "scasml_sure"):
            c = _comparison(metrics, name, "surrogate")
            if c:
                entry["comparisons"][name] = {
                    "improvement_percent": c["improvement_percent"], "ci95": c["improvement_percent_ci95"],
                    "p_value": c["paired_over_repetitions"].get("p_value"),
                    "fraction_of_points_improved": c["fraction_of_points_improved"],
                }
        entry["sweeps"] = [{k: sw.get(k) for k in ("sweep", "value", "method", "relative_l2", "evaluations_per_point")}
                           for sw in metrics["sweeps"]]
        if (path / "config.toml").is_file():
            config = tomllib.loads((path / "config.toml").read_text())
            entry["training"] = {k: config["training"].get(k) for k in ("steps", "collocation", "sampling", "seed")}
        rows[row] = entry
    return rows


def _fmt(value, spec=".2e"):
    return "—" if value is None else format(value, spec)


def _l2(method):
    if method is None:
        return "—"
    ci = method["ci95"]
    half = None if ci is None else (ci[1] - ci[0]) / 2
    return _fmt(method["relative_l2"]) + ("" if half is None else f" ± {half:.1e}")


def _seconds(method):
    if method is None:
        return "—"
    return f"{_fmt(method['warm_seconds'], '.1f')} / {_fmt(method['cold_seconds'], '.1f')}"


def markdown(rows: dict) -> str:
    head = ("| row | reps | surrogate | plain MLP (no clip) | SCaSML (no clip) | gain | p | SCaSML (paper clip) | gain "
            "| p | SCaSML (SURE shrinkage) | gain | p | SCaSML s warm / cold | paper: surrogate / SCaSML / gain |\n|"
            + "---|" * 15)
    lines = [head]
    for row, e in rows.items():
        m, c = e["methods"], e["comparisons"]
        paper = PAPER.get(row)
        paper_text = "—" if paper is None else f"{_fmt(paper[0])} / {_fmt(paper[2])} / {paper[3]} %"
        cells = [row, str(e["repetitions"]), _l2(m.get("surrogate")), _l2(m.get("mlp_noclip")),
                 _l2(m.get("scasml_noclip"))]
        for name in ("scasml_noclip", "scasml", "scasml_sure"):
            comp = c.get(name)
            if name != "scasml_noclip":
                cells.append(_l2(m.get(name)))
            cells += ["—", "—"] if comp is None else [_fmt(comp["improvement_percent"], ".0f") + " %",
                                                     _fmt(comp["p_value"], ".1e")]
        cells += [_seconds(m.get("scasml_noclip")), paper_text]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(args) -> int:
    rows = summarise(Path(args.folder))
    if not rows:
        print(f"no finished rows in {args.folder}", file=sys.stderr)
        return 1
    text = markdown(rows)
    print(text)
    record = {"machine": platform.platform(), "rows": rows, "paper": PAPER}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the rows")
    p.add_argument("--out", default="runs/table1")
    p.add_argument("--rows", nargs="+", default=None, help=f"default: all ({', '.join(ROWS)})")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--deadline", type=float, default=0.0, help="stop unfinished rows after this many seconds")
    p.add_argument("--set", action="append", default=[], help="passed to every `scasml run`")
    p.add_argument("--methods", nargs="+", default=None,
                   help="run only these methods of each row's config (e.g. surrogate scasml_noclip scasml_sure)")
    p.add_argument("--surrogates", default=None,
                   help="a previous run folder: use its trained surrogates (ROW/checkpoint.scasml), no training")
    p.set_defaults(func=run)
    s = sub.add_parser("summary", help="tabulate finished rows")
    s.add_argument("folder")
    s.add_argument("--json", default=None)
    s.add_argument("--markdown", default=None)
    s.set_defaults(func=summary)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
