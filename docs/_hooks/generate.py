"""MkDocs hook: pages generated from the code at build time, so that they follow the code without editing.

* ``api/*.md``: one page per public module (``scasml`` and each public subpackage in ``dir(scasml)``) with an
  mkdocstrings entry for every public name. A module's public names are its ``__all__`` if it has one, otherwise
  the names in ``dir(module)`` without a leading underscore, leaving out submodules and names the module merely
  imports for its own use (a plain ``from x import name``; re-exports are written ``import name as name``). A name
  that is also exported by ``scasml`` itself is documented once, on the ``scasml`` page, and linked from the
  subpackage's page.
* ``cli.md``: the help of every ``scasml`` subcommand, from the argparse parser in ``scasml/cli.py``.
* ``configs.md``: every config key (from the schema in ``scasml/experiments/_schema.py``) and the shipped configs.
* ``results.md``: ``experiments/RESULTS.md``; ``changelog.md``: ``CHANGELOG.md``.

The "API reference" entry of the nav in mkdocs.yml is expanded to the generated API pages.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import re
from pathlib import Path
from types import ModuleType

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "scasml"
API_NAV_TITLE = "API reference"

# Section titles of the top-level page, by the module that defines a name (others get a title from the module).
GROUPS = {
    "scasml._pde": "Problems",
    "scasml._domain": "Domains",
    "scasml._calibrate": "Calibration and plain Monte Carlo",
    "scasml.estimators": "Estimators",
    "scasml._shrinkage": "Shrinkage",
    "scasml.surrogates": "Surrogates",
    "scasml._pretrained": "Pretrained surrogates",
    "scasml._defect": "Law of defect",
    "scasml._derivatives": "Derivatives and traces",
    "scasml._devices": "Devices",
}


# ---- public names -------------------------------------------------------------------------------------------


def _plain_imports(module: ModuleType) -> set[str]:
    """Names bound at module level by ``from x import name`` / ``import name`` without ``as`` (not re-exports)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.asname is None:
                    names.add(alias.name.split(".")[0])
    return names


def public_names(module: ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    plain = _plain_imports(module)
    out = []
    for name in dir(module):
        if name.startswith("_") or name in plain:
            continue
        value = getattr(module, name)
        if isinstance(value, ModuleType):
            continue
        out.append(name)
    return out


def public_modules() -> list[ModuleType]:
    root = importlib.import_module(PACKAGE)
    subs = [getattr(root, n) for n in dir(root) if not n.startswith("_")]
    subs = [m for m in subs if isinstance(m, ModuleType) and m.__name__.startswith(PACKAGE + ".")]
    return [root, *sorted(subs, key=lambda m: m.__name__)]


def _page(module: ModuleType) -> str:
    return f"api/{module.__name__.removeprefix(PACKAGE + '.') if module.__name__ != PACKAGE else PACKAGE}.md"


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first.replace("|", "\\|")


def _kind(obj) -> str:
    return "class" if inspect.isclass(obj) else "function" if callable(obj) else "attribute"


def _group(obj) -> str:
    module = getattr(obj, "__module__", None) or ""
    for prefix, title in GROUPS.items():
        if module == prefix or module.startswith(prefix + "."):
            return title
    return module.removeprefix(PACKAGE + ".").strip("_").replace("_", " ").capitalize() or "Other"


# ---- API pages ----------------------------------------------------------------------------------------------


def _entry(path: str, level: int) -> str:
    return f"::: {path}\n    options:\n      heading_level: {level}\n"


def api_pages(modules: list[ModuleType]) -> dict[str, str]:
    root = modules[0]
    top = {id(getattr(root, n)): n for n in public_names(root)}
    pages = {}
    index = ["# API reference\n",
             "Every public name of the package, generated from the code and its docstrings.\n"]
    for module in modules:
        names = public_names(module)
        title = f"`{module.__name__}`"
        lines = [f"# {title}\n", (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ") + "\n"]
        index.append(f"## [{title}]({_page(module).removeprefix('api/')})\n")
        index.append("| name | kind | summary |\n|---|---|---|")
        if module is root:
            groups: dict[str, list[str]] = {}
            for name in names:
                groups.setdefault(_group(getattr(module, name)), []).append(name)
            order = [*GROUPS.values()]
            for group in sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g)):
                lines.append(f"## {group}\n")
                members = sorted(groups[group], key=lambda n: (_kind(getattr(module, n)) != "class", n.lower()))
                lines.extend(_entry(f"{module.__name__}.{name}", 3) for name in members)
        else:
            for name in sorted(names, key=lambda n: (_kind(getattr(module, n)) != "class", n.lower())):
                obj = getattr(module, name)
                if id(obj) in top:
                    lines.append(f"## `{module.__name__}.{name}` {{ #{module.__name__}.{name} }}\n\nThe same object as "
                                 f"[`{PACKAGE}.{top[id(obj)]}`][{PACKAGE}.{top[id(obj)]}].\n")
                else:
                    lines.append(_entry(f"{module.__name__}.{name}", 2))
        for name in sorted(names, key=str.lower):
            obj = getattr(module, name)
            target = f"{PACKAGE}.{top[id(obj)]}" if module is not root and id(obj) in top else \
                f"{module.__name__}.{name}"
            index.append(f"| [`{module.__name__}.{name}`][{target}] | {_kind(obj)} | {_summary(obj)} |")
        index.append("")
        pages[_page(module)] = "\n".join(lines)
    pages["api/index.md"] = "\n".join(index)
    return pages


# ---- command line and configs -------------------------------------------------------------------------------


def cli_page() -> str:
    from scasml.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help text to the terminal width: fix it
    parser = build_parser()
    lines = ["# Command line\n",
             "The `scasml` command (also `python -m scasml`). This page is the output of `scasml --help` and "
             "`scasml <command> --help`, generated from the parser in `scasml/cli.py`. Configs are described in "
             "[Configs](configs.md).\n",
             "## `scasml`\n", "```text", parser.format_help().rstrip(), "```\n"]
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        lines += [f"## `scasml {name}`\n", "```text", sub.format_help().rstrip(), "```\n"]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def configs_page() -> str:
    from scasml.experiments import load_config
    from scasml.experiments._config import available_configs, shipped_config_dir
    from scasml.experiments._schema import (
        METHOD_KEYS,
        SECTIONS,
        SURROGATE_KEYS,
        TRAINING_KEYS,
        MethodSection,
        SurrogateSection,
        TrainingSection,
        _default_text,
    )

    lines = [
        "# Configs\n",
        "An experiment is a TOML file with the tables below; every key is optional except `equation.name`, "
        "`equation.dim` and at least one `[methods.<name>]` table. `scasml run NAME` finds a config by name in "
        "`./configs`, then among the configs shipped with the package; a file path works too. "
        "`--set key=value` overrides any key (the value is read as TOML). Unknown keys, wrong types and "
        "impossible values are refused before any work starts, with a message that names the key.\n",
        "This reference is generated from the schema in `scasml/experiments/_schema.py` "
        "(the same as `scasml list --keys`).\n",
    ]
    tables = [*SECTIONS.items()]
    tables.insert(5, ("methods.<name>", MethodSection))
    for table, cls in tables:
        family = {SurrogateSection: SURROGATE_KEYS, TrainingSection: TRAINING_KEYS}.get(cls)
        used = "surrogate kinds" if family else "estimators" if cls is MethodSection else None
        lines.append(f"## `[{table}]`\n")
        header = "| key | default | allowed values | meaning |" + (f" {used} |" if used else "")
        lines += [header, "|---" * (5 if used else 4) + "|"]
        for f in dataclasses.fields(cls):
            choices = ", ".join(f"`{c!r}`" for c in f.metadata["choices"] or ())
            row = f"| `{f.name}` | `{_default_text(f)}` | {choices} | {_cell(f.metadata['doc'])} |"
            if family:
                row += " " + ", ".join(k for k, keys in family.items() if f.name in keys) + " |"
            elif cls is MethodSection:
                users = [k for k, keys in METHOD_KEYS.items() if f.name in keys and k != "surrogate"]
                row += " " + (", ".join(users) if f.name != "kind" else "all") + " |"
            lines.append(row)
        lines.append("")
    lines += ["## Shipped configs\n",
              f"Installed with the package (`{shipped_config_dir().relative_to(ROOT)}/` in the source tree); "
              "`scasml list` shows them with the equations.\n",
              "| name | equation | d | description |", "|---|---|---|---|"]
    for name, path in available_configs().items():
        config = load_config(path)
        lines.append(f"| `{name}` | {config.equation.name} | {config.equation.dim} | "
                     f"{_cell(config.experiment.description)} |")
    quickstart = (shipped_config_dir() / "quickstart.toml").read_text(encoding="utf-8")
    lines += ["", "## Example: `quickstart`\n", "```toml", quickstart.rstrip(), "```", ""]
    return "\n".join(lines)


# ---- results ------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")


def results_page() -> str:
    text = (ROOT / "experiments" / "RESULTS.md").read_text(encoding="utf-8")

    def relink(match: re.Match) -> str:  # files of the source tree are not part of the site: name them instead
        label, target = match.groups()
        if re.match(r"^[a-z]+://|^#", target):
            return match.group(0)
        return f"{label} (`{(Path('experiments') / target).as_posix()}`)" if label else f"`{target}`"

    note = ("!!! note\n    This page is `experiments/RESULTS.md` from the source tree; the scripts it names are in "
            "`experiments/` and `benchmarks/`.\n\n")
    text = LINK.sub(relink, text)
    first, _, rest = text.partition("\n")
    return f"{first}\n\n{note}{rest}" if first.startswith("# ") else note + text


# ---- hook events --------------------------------------------------------------------------------------------


def _generated(modules) -> dict[str, str]:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return {**api_pages(modules), "cli.md": cli_page(), "configs.md": configs_page(), "results.md": results_page(),
            "changelog.md": changelog}


_PAGES: dict[str, str] = {}


def on_config(config):
    modules = public_modules()  # before the CLI and config pages import more of the package
    _PAGES.clear()
    _PAGES.update(_generated(modules))
    api = [{"Overview": "api/index.md"}]
    api += [{f"{m.__name__}": _page(m)} for m in modules]
    nav = config.get("nav") or []
    for i, item in enumerate(nav):
        if isinstance(item, dict) and API_NAV_TITLE in item:
            nav[i] = {API_NAV_TITLE: api}
    return config


def on_files(files, config):
    for path, content in _PAGES.items():
        files.append(File.generated(config, path, content=content))
    return files
