"""Compiled contracts (ABI, creation bytecode, link references) from the npm packages that `make chain` installs,
library linking, and the project's own test feed compiled once with solc-js.

Sources (chain/package.json, exact versions in chain/package-lock.json; nothing is vendored):
- `@aave/core-v3` 1.19.3 (protocol v3.0.2, BUSL-1.1), hardhat format: `artifacts/contracts/**/<Name>.json` with
  `abi`, `bytecode` ("0x...") and `linkReferences`;
- `@uniswap/v2-core` 1.0.1 (GPL-3.0), waffle format: `build/<Name>.json` with `abi` and `evm.bytecode`;
- `solc` (solc-js) compiles `contracts/RoundFeed.sol` beside this module; the output is cached inside node_modules.

Link references give byte offsets into the creation bytecode: the placeholder of a reference at `start` is the 40 hex
characters `2*start .. 2*(start+20)` of the hex string without `0x`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AAVE_PACKAGE = "@aave/core-v3"
UNISWAP_V2_PACKAGE = "@uniswap/v2-core"
SOLC_PACKAGE = "solc"
DEFAULT_PACKAGES = (AAVE_PACKAGE, UNISWAP_V2_PACKAGE)
#: environment variable naming the node_modules folder to use (default: chain/node_modules of the repository)
NODE_MODULES_ENV = "DEFISTRESS_NODE_MODULES"
#: what to run when the tooling is missing
INSTALL_HINT = (
    "Run `make chain` in the repository (it runs `npm ci --no-audit --no-fund` in chain/; needs node >= 20 and npm), "
    f"or point ${NODE_MODULES_ENV} at a node_modules folder that holds the packages of chain/package.json."
)
CONTRACTS_DIR = Path(__file__).parent / "contracts"


class ArtifactError(RuntimeError):
    """A contract artifact that cannot be found, is ambiguous or cannot be linked."""


class MissingNodeModules(ArtifactError):
    """The npm packages of chain/package.json are not installed."""


def _candidates() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get(NODE_MODULES_ENV)
    if env:
        out.append(Path(env))
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            out += [d / "chain" / "node_modules", d / "node_modules"]
    return out


def find_node_modules(required: str = AAVE_PACKAGE) -> Path:
    """The node_modules folder that holds npm package `required`: $DEFISTRESS_NODE_MODULES, then `chain/node_modules`
    or `node_modules` in the parents of this package and of the working directory."""
    for c in _candidates():
        if (c / required).is_dir():
            return c
    raise MissingNodeModules(f"npm package {required!r} is not installed. {INSTALL_HINT}")


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: ABI, creation bytecode (hex without 0x, may hold link placeholders), link refs."""

    name: str
    package: str
    abi: list[dict[str, Any]]
    bytecode: str
    link_references: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_linking(self) -> bool:
        return bool(self.link_references)

    def library_names(self) -> list[str]:
        return sorted({lib for libs in self.link_references.values() for lib in libs})

    def creation_code(self, libraries: Mapping[str, str] | None = None) -> str:
        """Creation bytecode ('0x...') with `libraries` (name or 'source:Name' -> address) linked in."""
        if not self.needs_linking:
            return "0x" + self.bytecode
        return "0x" + link_bytecode(self.bytecode, self.link_references, libraries or {})


def _strip0x(h: str) -> str:
    return h[2:] if h.startswith(("0x", "0X")) else h


def link_bytecode(bytecode: str, link_references: Mapping[str, Any], libraries: Mapping[str, str]) -> str:
    """Replace library placeholders with addresses; returns hex without 0x. Raises ArtifactError naming the library
    that is missing or badly placed."""
    code = _strip0x(bytecode)
    chars = list(code)
    for src, libs in link_references.items():
        for lib, refs in libs.items():
            addr = libraries.get(f"{src}:{lib}", libraries.get(lib))
            if addr is None:
                raise ArtifactError(f"library {lib} ({src}) not provided for linking; given: {sorted(libraries)}")
            a = _strip0x(addr).lower()
            if len(a) != 40:
                raise ArtifactError(f"bad address for library {lib}: {addr!r}")
            for ref in refs:
                start, length = ref["start"], ref["length"]
                lo, hi = 2 * start, 2 * (start + length)
                if length != 20 or not code[lo:hi].startswith("__"):
                    raise ArtifactError(f"no 20-byte link placeholder for {lib} at byte {start}: {code[lo:hi]!r}")
                chars[lo:hi] = a
    out = "".join(chars)
    if "__$" in out:
        raise ArtifactError("bytecode still contains unlinked library placeholders")
    return out


@functools.cache
def _index(node_modules: str, package: str) -> dict[str, Path | None]:
    root = Path(node_modules) / package
    if package == UNISWAP_V2_PACKAGE:
        files = [p for p in (root / "build").glob("*.json") if p.name != "Combined-Json.json"]
    else:
        files = [p for p in (root / "artifacts" / "contracts").rglob("*.json") if not p.name.endswith(".dbg.json")]
    idx: dict[str, Path | None] = {}
    for p in sorted(files):
        idx[p.stem] = None if p.stem in idx else p  # None: the name is ambiguous inside the package
    return idx


@functools.cache
def _load(path: str, package: str) -> Artifact:
    raw = json.loads(Path(path).read_text())
    if "evm" in raw:  # waffle (uniswap)
        bc = raw["evm"]["bytecode"]
        bytecode, links = bc["object"], bc.get("linkReferences") or {}
    else:  # hardhat (aave)
        bytecode, links = raw["bytecode"], raw.get("linkReferences") or {}
    return Artifact(Path(path).stem, package, raw["abi"], _strip0x(bytecode), links)


def load_artifact(name: str, package: str | None = None, node_modules: Path | None = None) -> Artifact:
    """Artifact `name` (e.g. 'Pool', 'UniswapV2Pair', 'RoundFeed'). `package` restricts the search; it is needed
    for names both packages ship (ERC20, IERC20, SafeMath)."""
    if name == "RoundFeed":
        return round_feed_artifact()
    packages = (package,) if package else DEFAULT_PACKAGES
    found: list[tuple[str, Path]] = []
    for pkg in packages:
        idx = _index(str(node_modules or find_node_modules(pkg)), pkg)
        if name in idx:
            path = idx[name]
            if path is None:
                raise ArtifactError(f"contract name {name!r} is ambiguous inside {pkg}")
            found.append((pkg, path))
    if not found:
        raise ArtifactError(f"no artifact named {name!r} in {list(packages)}")
    if len(found) > 1:
        raise ArtifactError(f"{name!r} exists in {[f[0] for f in found]}; pass package=")
    pkg, path = found[0]
    return _load(str(path), pkg)


_SOLC_SCRIPT = """
const solc = require('solc'); const fs = require('fs');
const input = {language: 'Solidity', sources: {'RoundFeed.sol': {content: fs.readFileSync(0, 'utf8')}},
  settings: {optimizer: {enabled: true, runs: 200}, outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
process.stdout.write(solc.compile(JSON.stringify(input)));
"""


@functools.cache
def round_feed_artifact() -> Artifact:
    """The project's RoundFeed (contracts/RoundFeed.sol) compiled with the pinned solc-js; cached by source hash."""
    src = (CONTRACTS_DIR / "RoundFeed.sol").read_text()
    nm = find_node_modules(SOLC_PACKAGE)
    cache = nm / ".defistress-build" / f"RoundFeed-{hashlib.sha256(src.encode()).hexdigest()[:16]}.json"
    if not cache.is_file():
        node = shutil.which("node")
        if node is None:
            raise MissingNodeModules(f"`node` is not on PATH: it compiles RoundFeed.sol with solc-js. {INSTALL_HINT}")
        proc = subprocess.run(
            [node, "-e", _SOLC_SCRIPT], input=src, capture_output=True, text=True, cwd=nm.parent, timeout=300
        )
        out = json.loads(proc.stdout or "{}")
        errors = [e["formattedMessage"] for e in out.get("errors", []) if e.get("severity") == "error"]
        if proc.returncode or errors or "contracts" not in out:
            raise ArtifactError(f"solc-js could not compile RoundFeed.sol: {errors or proc.stderr[-2000:]}")
        c = out["contracts"]["RoundFeed.sol"]["RoundFeed"]
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"abi": c["abi"], "bytecode": c["evm"]["bytecode"]["object"]}))
        os.replace(tmp, cache)
    raw = json.loads(cache.read_text())
    return Artifact("RoundFeed", "defistress", raw["abi"], _strip0x(raw["bytecode"]))
