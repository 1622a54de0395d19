"""What writing results safely costs: SWMR appends vs plain appends, and claim + commit.

    .venv/bin/python benchmarks/results_writing.py [variables] [blocks]

1. Appends: the Recorder's own dataset options (chunked, gzip 1, shuffle) and block writes
   (1024 rows, every dataset resized and written, then the file flushed), in a file switched
   to SWMR mode as ``cosim.results.recorder`` does and in a plain file; interleaved, best of 3 each.
   Prints seconds per block and the ratio.
2. The life of a results path: ``claim`` + writing a small file + ``commit`` (the rename)
   against writing the same file straight to the target; interleaved, best of 50.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from cosim.results.output import claim, commit
from cosim.results.recorder import BLOCK_ROWS, LIBVER, create_results_file, write_status


def append_seconds(path: Path, variables: int, blocks: int, swmr: bool) -> float:
    """Seconds per block of BLOCK_ROWS rows appended to ``variables`` datasets and flushed."""
    options = {"chunks": (BLOCK_ROWS,), "maxshape": (None,), "dtype": "f8",
               "compression": "gzip", "compression_opts": 1, "shuffle": True}
    rng = np.random.default_rng(1)
    block = np.cumsum(rng.normal(size=(BLOCK_ROWS, variables)), axis=0)
    with h5py.File(path, "w", libver=LIBVER, locking=False) as file:
        datasets = [file.create_dataset(f"v{i}", shape=(0,), **options)
                    for i in range(variables)]
        if swmr:
            file.swmr_mode = True
        started = time.perf_counter()
        for b in range(blocks):
            stop = (b + 1) * BLOCK_ROWS
            for column, dataset in enumerate(datasets):
                dataset.resize((stop,))
                dataset[stop - BLOCK_ROWS:stop] = block[:, column]
            file.flush()
        return (time.perf_counter() - started) / blocks


def small_run(path: Path) -> None:
    with create_results_file(path, {"benchmark": "results_writing"}) as file:
        file.create_dataset("time", data=np.arange(100.0))
    with h5py.File(path, "r+", locking=False) as file:
        write_status(file, None)


def lifecycle_seconds(folder: Path, claimed: bool) -> float:
    target = folder / "target.h5"
    started = time.perf_counter()
    if claimed:
        claim_ = claim(target)
        small_run(claim_.partial)
        commit(claim_, status="completed")
    else:
        small_run(target)
    return time.perf_counter() - started


def main() -> None:
    variables = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        best = {True: np.inf, False: np.inf}
        for _ in range(3):
            for swmr in (False, True):
                best[swmr] = min(best[swmr], append_seconds(folder / f"a{swmr}.h5", variables,
                                                            blocks, swmr))
        print(f"appending {blocks} blocks of {BLOCK_ROWS} rows x {variables} variables "
              "(gzip 1, flushed per block):")
        print(f"  plain file  {best[False] * 1e3:8.2f} ms per block")
        print(f"  SWMR mode   {best[True] * 1e3:8.2f} ms per block   "
              f"ratio SWMR/plain {best[True] / best[False]:.2f}")
        direct = claimed = np.inf
        for _ in range(50):  # interleaved: a busy machine slows both alike
            direct = min(direct, lifecycle_seconds(folder, False))
            claimed = min(claimed, lifecycle_seconds(folder, True))
        print("a small results file written straight to the target vs claim + partial file + "
              "commit (best of 50):")
        print(f"  direct {direct * 1e3:.2f} ms, claimed {claimed * 1e3:.2f} ms, "
              f"cost of claim + commit {1e3 * (claimed - direct):.2f} ms per run")


if __name__ == "__main__":
    main()
