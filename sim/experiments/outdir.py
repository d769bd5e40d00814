"""Output folders that never lose anything: checked before the work starts, written atomically, marked.

Every folder defistress writes (a run, a regime comparison, a sweep, a margin comparison or backtest)
holds a marker file, `.defistress.json`, naming its kind and the configuration it was made with. An
output folder is accepted only if it is missing, empty, or a folder of the same kind (its marker); a
folder of the same kind is replaced only with `force` (runs) or resumed only when its configuration is
the same (comparisons, sweeps). Anything else (a user's folder, a file, `.`, a path under a file, an
unwritable place) is refused with an `OutputFolderError` that names the option and the path, before a
single block is simulated.

`staged(out)` yields a temporary sibling folder to write into and moves it into place at the end (the old
folder of the same kind is swapped out and deleted only after the new one is in place), so a failed or
interrupted write never leaves partial output and never damages an earlier result. Folders are created
with the user's umask (tempfile's private 0700 is widened to what `mkdir` would give).

This module is shared by every command that writes a folder (runs, compare, margin; sweeps can adopt it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = ".defistress.json"
#: kinds of output folder, as written in the marker
KINDS = ("run", "compare", "sweep", "margin-compare", "margin-backtest")


class OutputFolderError(ValueError):
    """An output path that cannot be used; the message names the option, the path and what to do."""


def read_marker(folder: Path) -> dict | None:
    """The marker of a defistress output folder, or None when the folder is not one."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") in KINDS else None


def write_marker(folder: Path, kind: str, config: dict | None = None) -> None:
    """Mark `folder` as an output folder of `kind` made with `config` (JSON-able)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: allowed {KINDS}")
    text = json.dumps({"kind": kind, "config": config or {}}, indent=2, sort_keys=True, default=str)
    (Path(folder) / MARKER).write_text(text + "\n", encoding="utf-8")


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_out(
    path: str | Path, kind: str, *, force: bool = False, option: str = "--out", config: dict | None = None
) -> Path:
    """Check an output folder before any work: returns the path, or raises OutputFolderError.

    Accepted: a missing path whose nearest existing parent is a writable folder; an empty folder; a folder
    of the same `kind`. A folder of the same kind must have the same `config` (when one is given) unless
    `force`; a run folder is replaced only with `force` (`config=None` for runs)."""
    p = Path(path)
    where = f"{option} {str(path)!r}"
    if str(path).strip() == "" or p.name in ("", ".", "..") or p.resolve() == Path.cwd().resolve():
        raise OutputFolderError(f"{where}: name a new folder (for example runs/my-{kind}), not '.' or '..'")
    if p.exists() and not p.is_dir():
        raise OutputFolderError(f"{where} is a file, not a folder; choose a folder path (nothing was changed)")
    parent = _existing_parent(p)
    if not parent.is_dir():
        raise OutputFolderError(f"{where}: {str(parent)!r} is a file, so no folder can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.is_dir() and not os.access(p, os.W_OK | os.X_OK)):
        raise OutputFolderError(f"{where}: {str(p if p.is_dir() else parent)!r} is not writable")
    if not p.is_dir() or not any(p.iterdir()):
        return p
    marker = read_marker(p)
    if marker is None:
        raise OutputFolderError(
            f"{where} is a folder that holds other files and is not a defistress {kind} folder; "
            "refusing to write into it (nothing was changed): choose a new or empty folder"
        )
    if marker["kind"] != kind:
        raise OutputFolderError(
            f"{where} holds a defistress {marker['kind']} folder, not a {kind} folder; choose another folder"
        )
    if config is None:  # a single result (a run): replacing it needs force
        if not force:
            raise OutputFolderError(
                f"{where} holds an earlier {kind}; pass --force to replace it, or choose another folder"
            )
        return p
    if _canonical(marker.get("config")) != _canonical(config) and not force:
        raise OutputFolderError(
            f"{where} holds a {kind} made with a different configuration "
            f"({_difference(marker.get('config') or {}, config)}); its results would be pooled with these: "
            "choose another folder, or pass --force to discard them"
        )
    return p


def check_out_file(path: str | Path, suffixes: tuple[str, ...], *, force: bool = False, option: str = "--out") -> Path:
    """Check a single output file before any work: a known suffix, not a folder, a parent that is (or can be
    made) a writable folder, and no existing file unless `force`."""
    p = Path(path)
    where = f"{option} {str(path)!r}"
    if p.suffix.lower() not in suffixes:
        raise OutputFolderError(f"{where}: unsupported file type {p.suffix or '(none)'!r}; allowed {list(suffixes)}")
    if p.is_dir():
        raise OutputFolderError(f"{where} is a folder; name a file, e.g. {p / ('out' + suffixes[0])}")
    parent = _existing_parent(p)
    if not parent.is_dir():
        raise OutputFolderError(f"{where}: {str(parent)!r} is a file, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputFolderError(f"{where}: {str(p if p.exists() else parent)!r} is not writable")
    if p.exists() and not force:
        raise OutputFolderError(f"{where} already exists; pass --force to replace it, or choose another name")
    return p


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """A temporary sibling file (same suffix) to write; moved to `path` on success, deleted on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with cleanup_on_sigterm():
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file_atomically(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` through a temporary file (never a half-written file)."""
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def is_ours(path: str | Path, kind: str) -> bool:
    """True when `path` is a folder of `kind` (it holds the marker)."""
    m = read_marker(Path(path))
    return m is not None and m["kind"] == kind


@contextlib.contextmanager
def staged(out: str | Path, kind: str, config: dict | None = None) -> Iterator[Path]:
    """A temporary sibling folder to write into; on success it is marked and moved to `out` (replacing an
    earlier folder of the same kind), on any failure or interruption it is deleted and `out` is unchanged.

    Callers run `check_out` first: `staged` itself refuses to replace a folder that is not of `kind`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        with cleanup_on_sigterm():
            yield tmp
            write_marker(tmp, kind, config)
            replace_folder(tmp, out, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, out: Path, kind: str) -> None:
    """Move `new` to `out`; an existing `out` must be empty or of `kind`, and is deleted once `new` is in place."""
    if out.exists():
        if out.is_dir() and any(out.iterdir()) and not is_ours(out, kind):
            raise OutputFolderError(f"{str(out)!r} is not a defistress {kind} folder; it was left untouched")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        try:
            os.replace(new, out)
        except BaseException:
            os.replace(old / out.name, out)  # put the earlier folder back
            shutil.rmtree(old, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def make_folder(out: str | Path, kind: str, config: dict | None = None) -> Path:
    """Create `out` (and its parents) with the umask's mode and mark it; for folders filled over time
    (comparisons, sweeps) after `check_out` accepted them. An existing marked folder is left as it is."""
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if created or read_marker(out) is None:
        write_marker(out, kind, config)
    return out


@contextlib.contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) while writing, so `finally`/`except` clean-ups run (the default
    action would kill the process and leave temporary folders behind). Only in the main thread."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _existing_parent(p: Path) -> Path:
    q = p.absolute().parent
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _difference(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if _canonical(old.get(k)) != _canonical(new.get(k)))
    return "; ".join(f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in keys[:3]) or "different"
