"""Where a results file goes: a path that cannot be created is refused in one sentence, before
anything runs (``cosim run``, in one process and under MPI alike). Standard library only: the
supervising process checks it without loading HDF5.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from cosim.errors import ResultsWriteError


def cannot_create(path: str | Path, error: OSError) -> ResultsWriteError:
    """The one sentence for a results file that cannot be created."""
    found = re.search(r"errno = (\d+)", str(error))  # how HDF5 reports it
    number = error.errno or (int(found.group(1)) if found else None)
    reason = os.strerror(number) if number else str(error).split("(")[0].strip()
    return ResultsWriteError(f"cannot create the results file {path}: {reason}; choose another "
                             "path with -o")


def check_output_path(path: str | Path) -> None:
    """Refuse a results path whose folder cannot be made or written, or that is a folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_create(path, error) from None
    if path.is_dir():
        raise cannot_create(path, IsADirectoryError(errno.EISDIR, "a folder"))
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise cannot_create(path, PermissionError(errno.EACCES, "no permission"))
