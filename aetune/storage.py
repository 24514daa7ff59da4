"""Where an experiment's files live: local paths and bucket URIs (s3://, gs://, ...) alike, read and written
whole (atomically on local disks; a full disk or a read-only folder is one UsageError naming the fix)."""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from aetune.errors import UsageError, first_line


def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def read_text(location: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if not is_uri(location):
        return Path(location).read_text() if Path(location).is_file() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


class StorageError(UsageError):
    """A file could not be written (disk full, quota, permissions); the message names the file."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_text(location: str, text: str, exclusive: bool = False) -> str:
    return write_bytes(location, text.encode(), exclusive)


def write_bytes(location: str, data: bytes | memoryview, exclusive: bool = False) -> str:
    """The package's one writer: the file appears complete or not at all.

    Locally: a uniquely named temp file in the target's folder, fsynced, then renamed over the target — or, with
    `exclusive`, hard-linked to it, which fails with FileExistsError when the target exists (an atomic create that
    two processes cannot both win). Buckets replace whole objects anyway; there `exclusive` is check-then-write.
    """
    try:
        if is_uri(location):
            _write_object(location, data, exclusive)
        else:
            _write_local(Path(location), data, exclusive)
    except FileExistsError:
        raise
    except OSError as err:
        fix = ("free space on that disk, then continue with --resume" if err.errno in DISK_FULL
               else "check that its folder is a writable directory")
        raise StorageError(f"cannot write {location}: {err.strerror or first_line(err)}; {fix}") from None
    return location


def _write_local(target: Path, data: bytes, exclusive: bool) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be: not "the target exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # unique name; mode from the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # renamed over the target
            pass


def _write_object(location: str, data: bytes, exclusive: bool) -> None:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if exclusive and fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        raise FileExistsError(errno.EEXIST, "exists", location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def delete(location: str) -> None:
    """Remove a file or object; one that is not there is fine."""
    if not is_uri(location):
        Path(location).unlink(missing_ok=True)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.File:
        fs.delete_file(path)
