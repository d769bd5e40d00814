"""Build `build/ns/defistress/`: a tree of symlinks that lays the repository out as the installed namespace.

The editable install maps the top-level folders (`sim/`, `agents/`, ...) onto `defistress.sim`, ... with an import
hook, which static tools cannot follow. mypy (`make typecheck`) and the API reference of the documentation
(`make docs`, mkdocstrings) read the sources through this tree instead. The mapping comes from
`[tool.setuptools] package-dir` in pyproject.toml, so a new top-level folder needs no change here. The links are
relative and point at folders, so files added later appear without re-running this script.

Usage: python .ci/ns_tree.py [OUT]   (OUT defaults to build/ns)
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NS = "defistress"


def build(out: Path) -> Path:
    """(Re)create the tree under `out` and return the path of its `defistress/` folder."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    pkg = out / NS
    shutil.rmtree(pkg, ignore_errors=True)  # only the links: a tool's cache beside them (.mypy_cache) stays
    pkg.mkdir(parents=True)
    for name, folder in sorted(mapping.items()):
        src = ROOT / folder
        if name == NS:  # the namespace's own files (version, entry points, py.typed)
            for f in sorted(src.iterdir()):
                if f.is_file():
                    (pkg / f.name).symlink_to(os.path.relpath(f, pkg))
        else:
            sub = name.removeprefix(f"{NS}.")
            if "." in sub:
                raise SystemExit(f"package-dir maps a nested package {name!r}: ns_tree only handles one level")
            (pkg / sub).symlink_to(os.path.relpath(src, pkg), target_is_directory=True)
    return pkg


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "ns"
    print(build(out.resolve()))
