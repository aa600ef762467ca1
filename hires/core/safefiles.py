"""Files opened without trusting what stands at a path.

Where hires reads a file a user or an earlier run left (an image, a TOML file, a record), the file
must be a regular file: a FIFO would block the read forever, a device could be endless.  Where hires
writes or deletes inside a folder of its own, it works through a descriptor of that folder, checked
once to be a real folder (not a symbolic link) owned by this user, and every file it makes there is
created new (``O_CREAT|O_EXCL|O_NOFOLLOW``) under a random temporary name, then renamed into place:
a link planted at any name in the folder is replaced as a name, never followed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# a file made new by this open, never through a link and never over anything at its name
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    for test, word in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a regular file"


def not_regular(path) -> str | None:
    """None when ``path`` (a symbolic link followed) is a regular file, else what it is; a path
    that cannot be looked at raises OSError."""
    mode = os.stat(path).st_mode
    return None if stat.S_ISREG(mode) else kind_of(mode)


def open_regular(path, *, dir_fd: int | None = None, follow: bool = True) -> int:
    """A read-only descriptor of the regular file at ``path``, opened without blocking (a FIFO opens
    at once, and is then refused); OSError when it is not a regular file (or, with ``follow`` off,
    is a symbolic link)."""
    flags = os.O_RDONLY | NONBLOCK | CLOEXEC | (0 if follow else NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{path} is {kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path, limit: int = 64 << 20, **kw) -> bytes:
    """The bytes of a regular file (see ``open_regular``), at most ``limit`` of them (more is an
    OSError: the files hires reads back this way are small records)."""
    with os.fdopen(open_regular(path, **kw), "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path} is larger than {limit} bytes")
    return data


def file_sha256(path) -> str:
    """The SHA-256 of a regular file's bytes, read a block at a time (never the whole file in memory)."""
    h = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


NPY_HEADER_BYTES = 4096   # an npy member's own header at most (numpy writes 128 bytes)


def load_npz(fh, most: int):
    """``np.load`` of an npz (no pickle) whose every member declares at most ``most`` bytes, stored
    or deflated: a member that declares more, or another compression, is a ValueError before any is
    inflated (a member is inflated only to the size it declares), so state on disk that someone
    crafted cannot make hires hold more than that."""
    import zipfile

    import numpy as np
    with zipfile.ZipFile(fh) as z:
        for info in z.infolist():
            if info.file_size > most or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{info.filename}: declares {info.file_size} bytes (at most {most})")
    fh.seek(0)
    return np.load(fh, allow_pickle=False)


class Folder:
    """A real folder, held by a descriptor: every name is opened, made, renamed and removed
    relative to it, so neither the folder nor a name in it can be swapped for a link to
    somewhere else between a check and a use."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = Path(path), fd

    @classmethod
    def open(cls, path) -> "Folder":
        """Open ``path``; OSError (``errno`` ELOOP or ENOTDIR) when it is a link or not a folder,
        PermissionError when another user owns it."""
        path = Path(path)
        fd = os.open(path, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{path} is not a folder")
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                raise PermissionError(f"{path} belongs to another user (uid {st.st_uid})")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def is_regular(self, name: str) -> bool:
        """``name`` is a regular file of the folder (not a link)."""
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        """A regular file of the folder (never through a link, never a FIFO)."""
        return read_regular(name, limit, dir_fd=self.fd, follow=False)

    def open_read(self, name: str):
        """A binary file object reading the regular file ``name`` (never through a link)."""
        return os.fdopen(open_regular(name, dir_fd=self.fd, follow=False), "rb")

    def unlink(self, name: str) -> None:
        """Remove the name (a link is removed, not what it points to)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def create(self, name: str):
        """A new file ``name`` made by this call, for writing (binary); FileExistsError when
        anything, a link included, is at that name."""
        return os.fdopen(os.open(name, NEW_FILE, 0o666, dir_fd=self.fd), "wb")

    @contextlib.contextmanager
    def replacing(self, name: str):
        """Write ``name`` atomically: a binary file object of a new temporary file (a random name,
        created exclusively) that is synced and renamed onto ``name`` when the block ends without
        an error (replacing whatever name stood there, a link as a name), and removed otherwise."""
        tmp = f"{name}.partial-{secrets.token_hex(6)}"
        fh = self.create(tmp)
        try:
            with fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.unlink(tmp)
            raise

    def write_text(self, name: str, text: str) -> None:
        with self.replacing(name) as fh:
            fh.write(text.encode())

    def rmdir_self(self) -> bool:
        """Remove this folder if it is empty (by its name in its parent, only while that name is
        still this folder); True when it went."""
        try:
            parent = os.open(self.path.parent, os.O_RDONLY | DIRECTORY | CLOEXEC)
        except OSError:
            return False
        try:
            here, st = os.fstat(self.fd), os.stat(self.path.name, dir_fd=parent, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != (here.st_dev, here.st_ino):
                return False
            os.rmdir(self.path.name, dir_fd=parent)
            return True
        except OSError:
            return False
        finally:
            os.close(parent)
