"""The ranks' part files of a run under MPI brought into its main results file: what a part
holds whole is linked (HDF5 external links: nothing copied), the rest copied without the
part's dimension-scale references; datasets cut to the rows every rank reached."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from cosim.errors import FAILED
from cosim.results.recorder import DIMENSION_ATTRIBUTES, attach_time_scale, is_recorded


def _merge_master(source: h5py.Group, target: h5py.Group) -> None:
    """A part's ``master/``: every rank took the same steps, so the first part's is copied;
    the FMU steps per instance of the others are added to it."""
    if "master" not in source:
        return
    if "master" not in target:
        source.copy(source["master"], target, name="master")
        return
    steps = target["master"].attrs.get("instance_steps")
    if steps is not None and "instance_steps" in source["master"].attrs:
        merged = {**json.loads(steps), **json.loads(source["master"].attrs["instance_steps"])}
        target["master"].attrs["instance_steps"] = json.dumps(merged)


def _merge_log(source: h5py.Group, target: h5py.Group) -> None:
    """A part's log into the main file's: its instances, and its output after the others'."""
    if "log" not in source:
        return
    log = target.require_group("log")
    for name, dataset in source["log"].get("instances", {}).items():
        instances = log.require_group("instances")
        if name not in instances:
            source.copy(dataset, instances, name=name)
    part = source["log"].get("output")
    if part is None:
        return
    if "output" not in log:
        source.copy(part, log, name="output")
        return
    output = log["output"]
    start = output.shape[0]
    output.resize((start + part.shape[0],))
    output[start:] = part[()]
    for key in ("lines", "bytes"):
        output.attrs[key] = int(output.attrs[key]) + int(part.attrs[key])


def merge_parts(main: h5py.File, parts: list[Path], link: str | None = None) -> bool:
    """Bring per-process part files into the main file; returns whether it links to any.

    A part holds ``time`` and ``instances/<name>`` (a distributed run) and/or
    ``members/<id>/…`` (cohort members, possibly split over several parts). ``link``: the
    parts' folder, relative to the main file: what a part holds whole (a cohort member; a
    distributed run's time and instances) is linked from the main file, nothing copied (HDF5
    external links: the main file's assembly costs the same whatever the data, and the parts
    stay beside it). Copied: everything without ``link``, a member split over parts, and the
    rows of a run resumed from a checkpoint (the main file holds the rows before, the parts'
    are appended). A part whose status is "failed" marks the main file (or the member) failed,
    with its error; what the FMUs logged is copied.
    """
    time = main.get("time", getlink=True)
    base = len(main["time"]) if isinstance(time, h5py.HardLink) else None
    parts = [Path(path) for path in parts if Path(path).exists()]
    held: dict[str, int] = {}  # member id -> how many parts hold some of it
    for path in parts:
        with h5py.File(path, "r", locking=False) as part:
            for member_id in part.get("members", {}):
                held[member_id] = held.get(member_id, 0) + 1
    linked = False
    for path in parts:
        with h5py.File(path, "r", locking=False) as part:
            if part.attrs.get("status") == FAILED:
                main.attrs["status"] = FAILED
                main.attrs["error"] = part.attrs.get("error", "")
            if "end_reason" in part.attrs:
                main.attrs["end_reason"] = part.attrs["end_reason"]
            if link is not None and base is None:
                linked |= _link_group(part, main, f"{link}/{path.name}")
            else:
                _merge_group(part, main, base)
            for member_id, member in part.get("members", {}).items():
                members = main.require_group("members")
                if link is not None and held[member_id] == 1:
                    if member_id in members:
                        del members[member_id]
                    members[member_id] = h5py.ExternalLink(f"{link}/{path.name}",
                                                           f"/members/{member_id}")
                    linked = True
                elif member_id not in members:  # the whole member is in this part: one copy
                    copy_plain(member, members, member_id)
                else:
                    target = members[member_id]
                    for key, value in member.attrs.items():
                        if key != "status" or target.attrs.get("status") != FAILED:
                            target.attrs[key] = value
                    _merge_group(member, target)
    if isinstance(main.get("time", getlink=True), h5py.HardLink):
        attach_time_scale(main)
    members = main.get("members", {})
    for member_id in members:
        if isinstance(members.get(member_id, getlink=True), h5py.HardLink):
            attach_time_scale(members[member_id])
    return linked


def _link_group(source: h5py.Group, target: h5py.Group, file: str) -> bool:
    """``source``'s time and instances linked from ``target`` (``file``: ``source``'s file,
    relative to ``target``'s); its log and its master's record copied. Returns whether it
    linked any."""
    _merge_log(source, target)
    _merge_master(source, target)
    if "time" in source and target.get("time", getlink=True) is None:
        target["time"] = h5py.ExternalLink(file, "/time")
    instances = source.get("instances", {})
    for name in instances:
        group = target.require_group("instances")
        if name in group or group.get(name, getlink=True) is not None:
            del group[name]
        group[name] = h5py.ExternalLink(file, f"/instances/{name}")
    return bool(instances) or "time" in source


def copy_plain(source: h5py.HLObject, target: h5py.Group, name: str) -> None:
    """``source`` copied into ``target`` as ``name`` without its dimension scales: HDF5 copies
    their references unchanged, pointing into the source file (``attach_time_scale`` attaches
    this file's)."""
    source.file.copy(source, target, name=name)
    copied = target[name]

    def plain(_, node) -> None:
        if isinstance(node, h5py.Dataset):
            for key in DIMENSION_ATTRIBUTES:
                if key in node.attrs:
                    del node.attrs[key]

    if isinstance(copied, h5py.Dataset):
        plain(name, copied)
        return
    for instance in copied.get("instances", {}).values() if "instances" in copied else ():
        if "time" in instance:
            del instance["time"]  # the part's time, linked there: the file's is linked again
    copied.visititems(plain)


def cut_to_common_length(group: h5py.Group) -> float | None:
    """Resize ``time`` and every recorded dataset of ``group`` held in this file to the rows all
    of them have (a writer killed between two datasets, ranks stopped at different steps);
    returns the last time kept (None: no rows). Datasets behind external links (part files)
    count for the rows but are left alone (a reader cuts them: ``cosim.results.reader``)."""
    series, linked = [], []
    if "time" in group:
        hard = isinstance(group.get("time", getlink=True), h5py.HardLink)
        (series if hard else linked).append(group["time"])
    instances = group.get("instances")
    for name in instances or ():
        hard = isinstance(instances.get(name, getlink=True), h5py.HardLink)
        if hard or name in instances:  # a link to a part that exists
            (series if hard else linked).extend(
                d for d in instances[name].values() if isinstance(d, h5py.Dataset)
                and is_recorded(d))
    if not series and not linked:
        return None
    rows = min(len(dataset) for dataset in series + linked)
    for dataset in series:
        if len(dataset) > rows:
            dataset.resize(rows, axis=0)  # time is the first dimension (FMI 3 arrays too)
    return float(group["time"][rows - 1]) if rows and "time" in group else None


def _merge_group(source: h5py.Group, target: h5py.Group, base: int | None = None) -> None:
    """``source``'s time and instances into ``target``: copied, or (``base``: the rows
    ``target`` holds, a resumed run) written after those rows."""
    _merge_log(source, target)
    _merge_master(source, target)
    if base is not None:
        _append_rows(source, target, base)
        return
    if "time" in source:
        link = target.get("time", getlink=True)
        if isinstance(link, h5py.ExternalLink):
            del target["time"]  # the link to a part, replaced by the data
        if "time" not in target:
            copy_plain(source["time"], target, "time")
    for name, instance in source.get("instances", {}).items():
        instances = target.require_group("instances")
        if name in instances or instances.get(name, getlink=True) is not None:
            del instances[name]  # an external link to the part, replaced by the data
        copy_plain(instance, instances, name)


def _append_rows(source: h5py.Group, target: h5py.Group, base: int) -> None:
    """A part's rows of a resumed run written after the ``base`` rows the main file holds
    (every part has the same time: written again, the same values)."""
    pairs = [(source["time"], target["time"])] if "time" in source else []
    for name, instance in source.get("instances", {}).items():
        pairs += [(dataset, target["instances"][name][variable])
                  for variable, dataset in instance.items() if isinstance(dataset, h5py.Dataset)]
    for part, main in pairs:
        rows = len(part)
        main.resize((base + rows, *main.shape[1:]))
        main[base:base + rows] = part[()]
