"""One self-contained results file from one that links to its ranks' part files.

Under MPI the main results file links to what the ranks' part files hold (HDF5 external links
into the folder ``<stem>.data-<run>/`` beside it: ``docs/cluster.md``); the two travel
together. ``pack`` writes a copy with every link resolved: one file to archive or send.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from cosim.errors import CosimError
from cosim.results.parts import copy_plain
from cosim.results.recorder import attach_time_scale


def pack(results: str | Path, output: str | Path) -> Path:
    """Copy ``results`` into ``output`` with the data its links point to; returns ``output``.
    Written under a temporary name and renamed: ``output`` is never left half written."""
    results, output = Path(results), Path(output)
    if output.resolve() == results.resolve():
        raise CosimError(f"{output}: pack writes a new file; give another -o")
    temporary = output.with_name(f".{output.name}.packing-{os.getpid()}")
    try:
        with h5py.File(results, "r") as source, h5py.File(temporary, "w") as target:
            _copy_resolved(source, target)
            target.attrs.pop("parts_folder", None)
            attach_time_scale(target)
            for member in target.get("members", {}).values():
                attach_time_scale(member)
        os.replace(temporary, output)
    except OSError as error:
        raise CosimError(f"{results}: cannot be packed ({error}); are its part files beside "
                         "it (attribute parts_folder)?") from None
    finally:
        temporary.unlink(missing_ok=True)
    return output


def _copy_resolved(source: h5py.Group, target: h5py.Group) -> None:
    """Groups made anew (attributes kept), datasets copied wherever they are linked from;
    an instance's ``time`` (a link to its run's time scale) is linked again by
    ``attach_time_scale``, not copied."""
    target.attrs.update(source.attrs)
    in_instance = source.parent.name.endswith("/instances") if source.name != "/" else False
    for name in source:
        node = source[name]  # an external link is followed here
        if isinstance(node, h5py.Group):
            _copy_resolved(node, target.create_group(name))
        elif not (in_instance and name == "time"):
            copy_plain(node, target, name)
