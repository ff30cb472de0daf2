"""Files only their owner may read (mode 0600): the embedded database's master key, the first start's admin
key. Each is written whole under a temporary name and then moved or linked into place, so no reader ever
sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _written(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 whatever the umask says
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(name)


def create(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it exists (then False, and nothing changes). Of two processes racing
    to create it, one wins and the other reads the winner's whole file."""
    temporary = _written(path, text)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return True


def replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, replacing what was there in one step."""
    os.replace(_written(path, text), path)
