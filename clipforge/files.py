"""Files written whole, and folders claimed by one process at a time.

Every file clipforge writes goes through :func:`atomic_path` (a temporary name beside it, renamed
once whole), so a killed process leaves the previous file or the new one, never half of one. A
folder is claimed with a lock file made with ``O_EXCL`` (:func:`take_lock`), which records the
process; one left by a process that died on this host is taken over. Runs, analyses and sweeps
share these; what a run's folder holds is :mod:`clipforge.outputs`' business.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def this_process() -> dict[str, Any]:
    """This process's id and host, as locks and ``run.json`` record them."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a lock or ``run.json`` names still runs: None when it ran on another host.
    A lock file that cannot be read (:func:`lock_holder`) names no process: dead once it is older than
    :data:`UNREADABLE_LOCK_GRACE`, unknown (None) before."""
    if UNREADABLE in record:
        return False if record.get("stale") else None
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return None
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: seconds after which a lock file that cannot be read (empty, garbled) counts as left by a process
#: that died: a lock is created (``O_EXCL``) and then written, so for a moment a live one is empty too,
#: and one still unreadable this long after was left by a process killed in between
UNREADABLE_LOCK_GRACE = 2.0

#: the key of :func:`lock_holder`'s record of a lock file that cannot be read (its path)
UNREADABLE = "lock_unreadable"


class OutputExistsError(FileExistsError):
    """An output folder that is not this process's to write in: ``why`` says what is there."""

    def __init__(self, path: Path, why: str):
        super().__init__(
            f"output directory {str(path)!r} already exists and {why}; "
            "choose another with --out (clipforge never overwrites results)"
        )


class FolderInUseError(OutputExistsError):
    """A live process holds the lock (``holder``: its pid and host), or one whose lock cannot be read
    yet (``holder`` then names the lock file)."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        self.holder = holder
        if UNREADABLE in holder:
            why = (
                f"has a lock file {holder[UNREADABLE]!r} that cannot be read (empty or garbled): a process may be "
                "claiming the folder right now, or one was killed while it did; if no clipforge process uses "
                "this folder, remove that file"
            )
        else:
            why = f"is in use by process {holder.get('pid')} on {holder.get('host')}"
        super().__init__(path, why)


class OutputPathError(FileExistsError):
    """The output folder cannot be made where it was asked for: something that is not a folder, or a
    symbolic link to nowhere, is in the way."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"cannot make the output folder {str(path)!r}: {why}; choose another with --out")


def make_folder(path: Path) -> None:
    """``mkdir -p path``; when something is in the way, an :class:`OutputPathError` that names it
    (rather than "[Errno 17] File exists")."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for part in [*reversed(path.parents), path]:
            if part.is_symlink() and not part.exists():
                raise OutputPathError(
                    path, f"{str(part)!r} is a symbolic link to {os.readlink(part)!r}, which does not exist"
                ) from None
            if part.exists() and not part.is_dir():
                raise OutputPathError(path, f"{str(part)!r} is a file, not a folder") from None
        raise


def take_lock(lock: Path) -> None:
    """Create the lock file ``lock`` with ``O_EXCL`` (recording this process), or refuse when a live
    process holds it; a lock left by a process that died on this host is taken over, and so is one
    that cannot be read (empty, garbled) once :data:`UNREADABLE_LOCK_GRACE` has passed (waited for
    here: a lock being written is empty for a moment).

    Taking over is one step that cannot race: under an exclusive ``flock`` of the folder (which the
    kernel drops if its holder dies), the lock is read again and, if its process is still dead,
    replaced by this process's with an atomic rename. Two processes that both found the dead lock
    take turns there, and the second finds the first alive (deleting the dead lock and creating a
    new one instead, as before, let both succeed: the second deleted the first's new lock)."""
    waited_out = None  # when an unreadable lock has had its grace, by this process's clock
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with _folder_guard(lock.parent):
                holder = lock_holder(lock)
                unreadable_for_long = (
                    holder is not None
                    and UNREADABLE in holder
                    and waited_out is not None
                    and time.monotonic() >= waited_out
                )
                if holder is not None and (process_alive(holder) is False or unreadable_for_long):
                    with atomic_path(lock) as tmp:  # a killed run's lock: take it over
                        tmp.write_text(json.dumps(this_process()), encoding="utf-8")
                    return
            if holder is None:  # released meanwhile: claim it as new (O_EXCL again: one process wins)
                continue
            if UNREADABLE in holder:  # being written, perhaps: read it again until its grace has passed
                if waited_out is None:
                    waited_out = time.monotonic() + UNREADABLE_LOCK_GRACE
                time.sleep(0.02)
                continue
            raise FolderInUseError(lock.parent, holder) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(this_process(), f)
        return


def lock_holder(lock: Path) -> dict[str, Any] | None:
    """What a lock file records, or None when it is gone. One that cannot be read as a JSON object
    with a ``pid`` and a ``host`` (empty, garbled) gives ``{UNREADABLE: its path, "stale": whether it is older than
    UNREADABLE_LOCK_GRACE}``, which :func:`process_alive` calls dead once stale."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        holder = None
    if isinstance(holder, dict) and isinstance(holder.get("pid"), int) and isinstance(holder.get("host"), str):
        return holder
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        age = 0.0
    return {UNREADABLE: str(lock), "stale": age >= UNREADABLE_LOCK_GRACE}


@contextmanager
def _folder_guard(folder: Path, wait: float = 10.0) -> Iterator[None]:
    """An exclusive ``flock`` of ``folder`` while the block runs (where the system has ``flock``);
    released by the kernel if this process dies, so it never outlives its holder."""
    try:
        import fcntl
    except ImportError:  # no flock here: the block runs unguarded
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputExistsError(folder, "is being claimed by another process right now") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # drops the flock


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` once the block succeeds,
    removed if it fails, so ``path`` is never half written. The name says which process writes it
    (``.NAME.PID@HOST.tmp``), so that one a killed process left can be told from one being written
    (:func:`remove_temporary_files`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}@{socket.gethostname()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+)(?:@(?P<host>[^/@]+))?)?\.tmp$")


def is_temporary_file_name(name: str) -> bool:
    """Whether ``name`` is one :func:`atomic_path` gives a file while it is written (``.NAME...tmp``)."""
    return _TEMPORARY.match(name) is not None


def remove_temporary_files(folder: Path, only_dead: bool = False) -> list[Path]:
    """Remove the temporary files (``.*.tmp``) that writes cut short by a kill left in ``folder`` and
    below it. Call it holding the folder's lock; with ``only_dead`` (a folder several processes share,
    as a sweep's shards do), only those whose writer, named in the file name, died on this host go.
    Returns what was removed."""
    removed = []
    for path in folder.rglob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file() or path.is_symlink():
            continue
        if only_dead:
            pid, host = match.group("pid"), match.group("host")
            if pid is None or host is None or process_alive({"pid": int(pid), "host": host}) is not False:
                continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def json_safe(value: Any) -> Any:
    """``value`` for JSON, which has no NaN or infinity: those become None (null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """JSON, indented, written atomically (a reader never sees half a file); NaN and infinities are
    written as null, so that every JSON reader can read it."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    """This process's umask, read without changing it where the system says it (Linux), else by
    setting it and back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_like_the_rest(path: Path) -> None:
    """Give a file the permissions an ordinary new file gets (``0o666`` less the umask):
    safetensors writes its files readable by their owner only (0600), which on a shared filesystem
    would hide ``images.safetensors`` and the checkpoint from colleagues who can read the PNGs."""
    os.chmod(path, 0o666 & ~_umask())


def slug(text: str, limit: int) -> str:
    """``text`` as a file name's words: lower case, runs of other characters as one ``-``, at most
    ``limit`` characters (empty when nothing is left)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit]
