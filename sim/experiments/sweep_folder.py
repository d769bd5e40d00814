"""The sweep folder on disk: where `--out` may point, its configuration record, its lock and its results file.

A sweep folder holds `sweep.json` (the configuration every row in it was run with), `results.jsonl` (one JSON
line per finished run, appended), and at the end `results.parquet` and `risk.csv`. While a sweep runs it also
holds `.sweep.lock`, which records the owner's pid and is held with `flock`: the kernel releases it when the
owner dies, so a lock left by a killed sweep is recognised as stale and taken over.

`check_out_target` is the generic output-folder guard (a folder is written only if it is missing, empty or
already one of ours); it takes the marker file that makes a folder "ours", so run folders can share it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

CONFIG = "sweep.json"
LOCK = ".sweep.lock"
RESULTS = "results.jsonl"
#: files a sweep writes at the end; removed when a sweep with work to do starts, so they only exist when complete
FINAL_FILES = ("results.parquet", "risk.csv")
#: the folder of a sweep's figures (sweep_figures.py draws them)
FIGURES = "figures"
#: bumped when the meaning of sweep.json changes
CONFIG_FORMAT = 1


class SweepFolderError(ValueError):
    """`--out` cannot be used as this sweep's folder; the message names the option and the path."""


def check_out_target(out: Path, marker: str, what: str = "sweep", option: str = "--out") -> bool:
    """Refuse an output path before any work starts; returns whether the folder already exists.

    Allowed: a missing path under a writable folder, an empty folder, or a folder holding `marker`.
    Refused: a file, a non-empty folder without the marker, a path under a file, an unwritable place.
    """
    out = Path(out)
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise SweepFolderError(f"{option} {out}: is a file, not a {what} folder; choose a folder")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise SweepFolderError(f"{option} {out}: folder is not writable")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise SweepFolderError(
                f"{option} {out}: folder is not empty and is not a {what} folder (no {marker}); "
                f"choose a new or empty folder"
            )
        return True
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SweepFolderError(f"{option} {out}: {parent} is a file, so no folder can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SweepFolderError(f"{option} {out}: cannot create it, {parent} is not writable")
    return False


@dataclass(frozen=True)
class SweepConfig:
    """What every row of a sweep folder shares: the base scenario (after --set) and the swept keys."""

    scenario: str
    scenario_sha256: str
    overrides: tuple[str, ...]
    grid_keys: tuple[str, ...]
    format: int = CONFIG_FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {**asdict(self), "overrides": list(self.overrides), "grid_keys": list(self.grid_keys)}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        d = json.loads(text)
        return cls(d["scenario"], d["scenario_sha256"], tuple(d["overrides"]), tuple(d["grid_keys"]), d["format"])

    def differences(self, other: SweepConfig) -> list[str]:
        """Human-readable lines saying how `other` (this invocation) differs from self (the folder)."""
        out = []
        if self.format != other.format:
            out.append(f"folder format {self.format}, this defistress writes format {other.format}")
        if self.grid_keys != other.grid_keys:
            out.append(f"--grid keys: folder {list(self.grid_keys)}, now {list(other.grid_keys)}")
        if self.scenario_sha256 != other.scenario_sha256:
            if self.overrides != other.overrides:
                out.append(f"--set values: folder {list(self.overrides)}, now {list(other.overrides)}")
            if self.scenario != other.scenario:
                out.append(f"scenario: folder {self.scenario}, now {other.scenario}")
            if not out:
                out.append("the scenario file's content (or the code's defaults) changed since the folder was made")
        return out


def check_config(out: Path, config: SweepConfig) -> bool:
    """Refuse a folder made by a sweep of another configuration; returns whether the folder has a record."""
    path = Path(out) / CONFIG
    if not path.is_file():
        if (Path(out) / RESULTS).exists():
            raise SweepFolderError(
                f"--out {out}: holds {RESULTS} but no {CONFIG} (made by an older defistress), so its "
                "configuration is unknown and new rows could be pooled with other settings; use a new --out"
            )
        return False
    try:
        have = SweepConfig.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise SweepFolderError(f"--out {out}: {CONFIG} is unreadable ({exc}); use a new --out") from None
    diff = have.differences(config)
    if diff:
        raise SweepFolderError(
            f"--out {out}: this folder holds a sweep of another configuration, and its rows would be pooled "
            f"with these in risk.csv: " + "; ".join(diff) + ". Use a new --out (or the folder's settings)"
        )
    return True


def check_folder_config(out: Path, name: str, config: dict, what: str, advice: str = "use a new --out") -> None:
    """A tune or stress-search folder's `name` (its recorded configuration) must equal `config`: a folder of another
    configuration is refused naming every differing key (its results would be mixed with these)."""
    path = Path(out) / name
    if not path.is_file():
        return
    try:
        have = json.loads(path.read_text())
    except ValueError as exc:
        raise SweepFolderError(f"--out {out}: {name} is unreadable ({exc}); use a new --out") from None
    diff = [f"{k}: folder {have.get(k)!r}, now {v!r}" for k, v in config.items() if have.get(k) != v]
    if diff:
        raise SweepFolderError(
            f"--out {out}: this folder holds {what} of another configuration ({'; '.join(diff)}); {advice}"
        )


def write_config(out: Path, config: SweepConfig) -> None:
    tmp = Path(out) / f".{CONFIG}.tmp"
    tmp.write_text(config.to_json() + "\n")
    os.replace(tmp, Path(out) / CONFIG)


class SweepLock:
    """Exclusive use of a sweep folder: `.sweep.lock` held with flock, recording the owner's pid and host.

    A second sweep on the folder is refused with the owner's pid. A lock file whose flock is free was left
    by a sweep that died (the kernel drops flocks with their process): it is stale and is taken over.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd: int | None = None
        self.stale: dict | None = None

    def acquire(self) -> SweepLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = self.owner()
                who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
                raise SweepFolderError(
                    f"--out {self.path.parent}: another sweep ({who}) is using this folder; wait for it to finish "
                    "or use another --out"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the owner released (unlinked) the file between our open and flock: try again
        previous = os.read(fd, 4096)
        if previous.strip():
            try:
                self.stale = json.loads(previous)
            except ValueError:
                self.stale = {"raw": previous.decode(errors="replace")}
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink first, then drop the flock: nobody sees a free, live lock
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def read_rows(path: Path) -> Iterator[dict]:
    """Every complete row of a results file (torn or garbled lines are skipped)."""
    if not Path(path).exists():
        return
    with Path(path).open("rb") as f:
        for line in f:
            row = _parse(line)
            if row is not None:
                yield row


def _parse(line: bytes) -> dict | None:
    if not line.endswith(b"\n"):
        return None  # the last line of a file cut by a kill
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and "run_key" in row else None


def repair_results(path: Path) -> int:
    """Rewrite the results file without torn lines (a sweep killed mid-write); returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    bad = 0
    with path.open("rb") as f:
        for line in f:
            bad += _parse(line) is None
    if bad == 0:
        return 0
    tmp = path.with_name(f".{path.name}.repair")
    try:
        with path.open("rb") as src, tmp.open("wb") as dst:
            for line in src:
                if _parse(line) is not None:
                    dst.write(line)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return bad


class ResultsWriter:
    """Appends rows to results.jsonl as they complete: one `write` per batch, so a killed sweep loses nothing
    that was handed over (the kernel has it) and at most cuts the last line, which the next start rewrites out.

    `fsync` (durability against a power cut, not a process kill) happens at most every `fsync_every_s` seconds
    and on close: syncing every line cost about 6 ms per run on this machine, the client's largest serial cost.
    """

    def __init__(self, path: Path, fsync_every_s: float = 1.0):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fsync_every_s = fsync_every_s
        self.synced = time.monotonic()

    def append(self, data: bytes) -> None:
        """Append JSON lines (encoded by the workers, see `sweep_tasks.encode_rows`)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        if time.monotonic() - self.synced >= self.fsync_every_s:
            os.fsync(self.fd)
            self.synced = time.monotonic()

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
