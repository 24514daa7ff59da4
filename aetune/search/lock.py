"""One driver per experiment: a lock taken before the driver writes anything in the experiment's folder and held
for its whole life, new search or --resume alike. A second driver is refused with one line naming the holder.

Local storage: an OS lock (flock) on `.aetune-driver.lock` in the experiment folder; the kernel drops it when the
holder dies however it dies, so a lock file left by a killed driver is taken over at once (with a notice). Buckets,
and shared filesystems whose flock does not reach other hosts (AETUNE_LOCK=lease): a lease file `.aetune-driver.lease`
(host, PID, heartbeat time) rewritten every HEARTBEAT_S; a lease whose heartbeat is older than LEASE_S, or whose
process is gone from this host, is stale and taken over with a notice. Both files go when their driver ends.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from aetune.errors import UsageError, first_line
from aetune.storage import delete, is_uri, join, read_text, write_text

LOCK_FILE = ".aetune-driver.lock"
LEASE_FILE = ".aetune-driver.lease"
LEASE_S = 120.0  # a lease not renewed for this long belongs to a driver that is gone
HEARTBEAT_S = 20.0


class HeldError(UsageError):
    """Another driver runs this experiment."""


def holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time(), "token": uuid.uuid4().hex}


def describe(who: dict[str, Any]) -> str:
    return f"PID {who.get('pid')} on {who.get('host')}"


def _refusal(experiment: str, who: dict[str, Any]) -> HeldError:
    return HeldError(f"experiment {experiment} is being run by another driver ({describe(who)}); wait for it to end "
                     "or stop it (Ctrl-C), then continue with --resume")


def _notice(experiment: str, who: dict[str, Any], why: str) -> None:
    print(f"aetune: took over the lock of {experiment} from {describe(who)} ({why})", file=sys.stderr)


@contextlib.contextmanager
def hold(experiment: str) -> Iterator[None]:
    """Hold the experiment for the block; HeldError when another driver does."""
    folder = None if is_uri(experiment) else Path(experiment)
    lock = Lease(experiment) if folder is None or os.environ.get("AETUNE_LOCK") == "lease" else OsLock(folder)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class OsLock:
    def __init__(self, folder: Path):
        self.folder, self.path, self.fd, self.made = folder, folder / LOCK_FILE, None, []

    def acquire(self) -> None:
        try:
            self.made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]  # deepest first
            self.folder.mkdir(parents=True, exist_ok=True)
            while self.fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    self._tidy()
                    raise _refusal(str(self.folder), _read(self.path)) from None
                if _same_file(fd, self.path):  # not a file its last holder unlinked while we waited for it
                    self.fd = fd
                else:
                    os.close(fd)
        except OSError as err:
            self._tidy()
            raise UsageError(f"cannot lock {self.path}: {err.strerror or first_line(err)}; check that --storage "
                             "is a writable folder") from None
        previous = _read(self.path)
        if previous:
            _notice(str(self.folder), previous, "its process is gone")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(holder()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before closing: a driver that opened it now sees another file
            os.close(self.fd)
            self.fd = None
        self._tidy()

    def _tidy(self) -> None:
        """Remove the folders the lock made (the experiment's, and --storage's) again when nothing came into them."""
        for folder in self.made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _read(path: Path | str) -> dict[str, Any]:
    try:
        text = read_text(str(path))
        who = json.loads(text) if text else {}
        return who if isinstance(who, dict) else {}
    except (OSError, ValueError):
        return {}


class Lease:
    def __init__(self, experiment: str):
        self.experiment, self.path = experiment, join(experiment, LEASE_FILE)
        self.me, self.stop = holder(), threading.Event()
        self.beat: threading.Thread | None = None

    def acquire(self) -> None:
        current = _read(self.path)
        if current:
            why = stale(current)
            if why is None:
                raise _refusal(self.experiment, current)
            _notice(self.experiment, current, why)
        self._write()
        time.sleep(0.2)  # two drivers that read no lease at once: the last write wins, the other one sees it
        if _read(self.path).get("token") != self.me["token"]:
            raise _refusal(self.experiment, _read(self.path))
        self.beat = threading.Thread(target=self._renew, daemon=True, name="aetune-lease")
        self.beat.start()

    def _write(self) -> None:
        self.me["heartbeat"] = time.time()
        write_text(self.path, json.dumps(self.me))

    def _renew(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            if not self.beat_once():  # another driver took the lease over (this one stalled past LEASE_S)
                holder_now = _read(self.path)
                print(f"aetune: the lease on {self.experiment} was taken over by {describe(holder_now)}; stopping "
                      "this driver (two must never run one experiment)",
                      file=sys.stderr, flush=True)
                signal.raise_signal(signal.SIGINT)  # Tune stops gracefully and saves what it has
                return

    def beat_once(self) -> bool:
        """Renew the lease if it is still this driver's; False when another driver holds it now."""
        current = _read(self.path)
        if current and current.get("token") != self.me["token"]:
            return False
        with contextlib.suppress(UsageError):  # a missed beat is retried; LEASE_S allows several
            self._write()
        return True

    def release(self) -> None:
        self.stop.set()
        if self.beat is not None:
            self.beat.join()
            if _read(self.path).get("token") == self.me["token"]:
                delete(self.path)


def stale(lease: dict[str, Any]) -> str | None:
    """Why a lease no longer holds (None: it holds)."""
    age = time.time() - float(lease.get("heartbeat") or 0)
    if age > LEASE_S:
        return f"its heartbeat is {age:.0f} s old"
    if lease.get("host") == socket.gethostname() and not _alive(int(lease.get("pid") or 0)):
        return "its process is gone"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return pid > 0
