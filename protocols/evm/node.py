"""Start and stop a local Anvil node on the loopback interface, for tests, notebooks and the `evm` backend.

The binary comes from the npm package `@foundry-rs/anvil-linux-amd64` (installed by `make chain`);
`$DEFISTRESS_ANVIL` overrides its path. The node listens on 127.0.0.1 only, on a free port chosen here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defistress.protocols.evm.artifacts import INSTALL_HINT, MissingNodeModules, find_node_modules

ANVIL_ENV = "DEFISTRESS_ANVIL"
ANVIL_NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"
HOST = "127.0.0.1"  # never listen on anything but loopback


class AnvilNotFound(MissingNodeModules):
    """No anvil binary: `make chain` was not run (or node/npm are missing)."""


class AnvilStartError(RuntimeError):
    """Anvil started but did not answer, or exited; the message holds the tail of its log."""


def find_anvil(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of the anvil binary: `explicit`, $DEFISTRESS_ANVIL, the npm package in node_modules, then $PATH."""
    tried: list[str] = []
    for cand in (explicit, os.environ.get(ANVIL_ENV)):
        if cand:
            p = Path(cand)
            if p.is_file() and os.access(p, os.X_OK):
                return p
            tried.append(str(p))
    try:
        nm = find_node_modules(ANVIL_NPM_PACKAGE)
        for p in (nm / ANVIL_NPM_PACKAGE / "bin" / "anvil", nm / ".bin" / "anvil"):
            if p.is_file() and os.access(p, os.X_OK):
                return p
            tried.append(str(p))
    except MissingNodeModules:
        tried.append(f"node_modules/{ANVIL_NPM_PACKAGE}/bin/anvil")
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise AnvilNotFound(f"anvil binary not found (tried {', '.join(tried)} and $PATH). {INSTALL_HINT}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, timeout: float = 2.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@dataclass
class AnvilNode:
    """A running Anvil process; a context manager, or call start() / stop().

    auto_mine (default): one block per transaction, mined at once; False: `--no-mining` (mine with evm_mine).
    keep_states: `--prune-history N` keeps N recent states in memory. Without it Anvil persists old states and a
    336k-gas liquidationCall takes ~17 ms instead of ~4 ms once the chain has ~1,000 blocks; with 0 no eth_call at
    past blocks works (no revert-reason replay). None keeps everything (needed to read old blocks, e.g. imports).
    """

    chain_id: int = 31337
    accounts: int = 10
    balance_eth: int = 10_000
    auto_mine: bool = True
    block_time: float | None = None  # seconds between interval-mined blocks (implies no auto-mine)
    gas_limit: int | None = None  # block gas limit, gas units (Anvil default 30M)
    base_fee: int | None = None  # --block-base-fee-per-gas, wei
    auto_impersonate: bool = False  # any `from` may send without a key
    threads: int = 1  # tokio worker threads (the machine is shared)
    quiet: bool = True  # no per-transaction log lines
    keep_states: int | None = 64
    extra_args: list[str] = field(default_factory=list)
    binary: str | None = None
    port: int | None = None  # None: a free loopback port
    startup_timeout: float = 15.0  # seconds

    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    log_path: Path | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(find_anvil(self.binary)), "--host", HOST, "--port", str(self.port)]
        cmd += ["--chain-id", str(self.chain_id), "--accounts", str(self.accounts)]
        cmd += ["--balance", str(self.balance_eth), "--threads", str(self.threads)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        elif not self.auto_mine:
            cmd += ["--no-mining"]
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        if self.base_fee is not None:
            cmd += ["--block-base-fee-per-gas", str(self.base_fee)]
        if self.auto_impersonate:
            cmd += ["--auto-impersonate"]
        if self.quiet:
            cmd += ["--quiet"]
        if self.keep_states is not None:
            cmd += ["--prune-history"] + ([str(self.keep_states)] if self.keep_states > 0 else [])
        return cmd + list(self.extra_args)

    def start(self) -> AnvilNode:
        if self.proc is not None:
            raise AnvilStartError("already started")
        find_anvil(self.binary)  # the clear error first
        fixed = self.port is not None
        last = ""
        for _attempt in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port()
            fd, log = tempfile.mkstemp(prefix="anvil-", suffix=".log")
            self.log_path = Path(log)
            # stdout goes to a file, never a pipe: an unread pipe fills (64 KiB) and blocks the node
            self.proc = subprocess.Popen(
                self.command(), stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
            os.close(fd)
            try:
                self._wait_ready()
                return self
            except AnvilStartError as exc:
                last = str(exc)
                self.stop()
                if "in use" not in last.lower():
                    break
        raise AnvilStartError(last)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AnvilStartError(f"anvil exited with code {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
                if int(_rpc(self.url, "eth_chainId", 1.0)["result"], 16) == self.chain_id:
                    return
            time.sleep(0.02)
        raise AnvilStartError(f"anvil did not answer on {self.url} within {self.startup_timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text()[-n:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the node (SIGTERM, then SIGKILL after 5 s) and remove its log."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort: never leak a node
        with contextlib.suppress(Exception):
            self.stop()
