"""MkDocs hooks (mkdocs.yml `hooks:`): the pages generated from the code at build time.

- `reference/scenario.md`: every scenario key, from the pydantic schema (`defistress.scenarios.reference`);
- `reference/cli.md`: every command and option, from the typer app (typer's own `utils docs`);
- `reference/api/*.md`: one page per package, a mkdocstrings block per module, so a new module appears by itself;
- `notebooks/*.py`: the jupytext notebooks, rendered by mkdocs-jupyter from the repository's `notebooks/`;
- `changelog.md`: the repository's CHANGELOG.md.

Nothing generated is written into `docs/`: the pages are virtual files of the build. mkdocstrings reads the sources
through `build/ns` (.ci/ns_tree.py), since the editable install maps folders with an import hook.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

#: API reference pages: page stem -> (title, folder of the repository, dotted package, intro)
API_PAGES = {
    "index": ("defistress", "defistress", "defistress", "The namespace: version and the main entry points."),
    "engine": ("sim.engine", "sim/engine", "defistress.sim.engine", "The model, the block loop and its parts."),
    "experiments": ("sim.experiments", "sim/experiments", "defistress.sim.experiments", "Runs, sweeps, comparisons."),
    "analysis": ("sim.analysis", "sim/analysis", "defistress.sim.analysis", "Per-run metrics, contagion, risk."),
    "report": ("sim.report", "sim/report", "defistress.sim.report", "Figures and the HTML report."),
    "agents": ("agents", "agents", "defistress.agents", "Decision makers: populations and strategic agents."),
    "protocols": ("protocols", "protocols", "defistress.protocols", "Vectorised protocol state machines, ledger."),
    "margin": ("protocols.margin", "protocols/margin", "defistress.protocols.margin", "The margin library."),
    "evm": ("protocols.evm", "protocols/evm", "defistress.protocols.evm", "The bridge to real contracts on a chain."),
    "scenarios": ("scenarios", "scenarios", "defistress.scenarios", "Scenario schema, loader and built-ins."),
}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    _load("ns_tree", ROOT / ".ci" / "ns_tree.py").build(ROOT / "build" / "ns")
    return config


def api_page(title: str, folder: str, package: str, intro: str) -> str:
    mods = sorted(p for p in (ROOT / folder).glob("*.py") if p.name not in ("__main__.py",))
    lines = [f"# `{title}`", "", intro, ""]
    for p in mods:
        name = package if p.stem == "__init__" else f"{package}.{p.stem}"
        if p.stem == "__init__" and not p.read_text().strip():
            continue
        lines += [f"::: {name}", ""]
    return "\n".join(lines)


def cli_page() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "typer", "defistress.sim.cli.app", "utils", "docs", "--name", "defistress"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    intro = "Generated from the typer app (`defistress --help` and each command's `--help` say the same).\n\n"
    _, _, rest = out.partition("\n")  # typer's own title line ("# `defistress`") gives way to the page's
    return f"# Command line\n\n{intro}{rest.lstrip()}"


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files: Files, config: MkDocsConfig) -> Files:
    from defistress.scenarios.reference import markdown

    files.append(File.generated(config, "reference/scenario.md", content=markdown()))
    files.append(File.generated(config, "reference/cli.md", content=cli_page()))
    for stem, args in API_PAGES.items():
        files.append(File.generated(config, f"reference/api/{stem}.md", content=api_page(*args)))
    for nb in sorted((ROOT / "notebooks").glob("*.py")):  # a File rooted at the repository (mkdocs-jupyter
        # wraps it and needs a source directory, which a generated file lacks)
        files.append(File(f"notebooks/{nb.name}", str(ROOT), config.site_dir, config.use_directory_urls))
    files.append(File.generated(config, "changelog.md", abs_src_path=str(ROOT / "CHANGELOG.md")))
    return files
