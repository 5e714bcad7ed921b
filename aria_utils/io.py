"""Atomic file writes and sha256-checked downloads."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of `atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode())


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_checked(url: str, sha256: str, dest: str | Path, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` unless a file with the right sha256 is already there.

    The file is checked before it is moved into place: a wrong checksum raises and leaves nothing.
    """
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except OSError as e:
        raise ConnectionError(f"Could not download {url} ({e}). Are you online? Place the file at {dest} by hand.") from e
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ValueError(f"Checksum mismatch for {url}: expected sha256 {sha256}, got {got}. Nothing was written.")
    return atomic_write_bytes(dest, data)
