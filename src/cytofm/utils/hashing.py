"""Content digests of source files, cached by file identity so a resume does not re-read every file.

A replaced file with the same name, size and even mtime (``cp -p``) still gets a new inode or a new
ctime, which no user tool can set back; the cached digest is only reused while (inode, size, mtime_ns,
ctime_ns) are unchanged, and then the content is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def stat_key(path: str | os.PathLike) -> str:
    st = Path(path).stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def file_digest(path: str | os.PathLike, cached: tuple[str, str] | None = None) -> tuple[str, str]:
    """(stat key, sha256 of the content); ``cached`` = a previous (stat key, digest) of the same path."""
    key = stat_key(path)
    if cached is not None and cached[0] == key and cached[1]:
        return cached
    return key, sha256_file(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's content (hex), read in chunks so a whole slide never sits in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def digest_of(*parts) -> str:
    """A short hash of plain values (numbers, strings, arrays' bytes)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]
