"""What checkpoints cost: the flagship run without and with ``checkpoint: {every: s}``.

Runs the flagship scenario (compiled library, 20 s simulated) in turn without checkpoints and
with a checkpoint every ``--every`` seconds, ``--repeat`` times each, in this process, and
prints the median run seconds of each, their ratio, the seconds spent per checkpoint (timed
by the run itself) and the checkpoint file's size.

    python benchmarks/checkpoint.py [--every 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import h5py

from cosim.running.checkpoint import Checkpointer, checkpoint_path
from cosim.running.pipeline import run_scenario

ROOT = Path(__file__).resolve().parent.parent
FLAGSHIP = ROOT / "scenarios" / "vvi_complete_av_block.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=1.0, help="seconds between checkpoints")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes: list[int] = []
    original = Checkpointer.stepped

    def measuring(self, n, time):  # the checkpoint file's size, right after it is written
        saved = self.saved
        original(self, n, time)
        if self.saved > saved:
            sizes.append(self.path.stat().st_size)

    Checkpointer.stepped = measuring
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "plain.yaml"
        plain.write_text(FLAGSHIP.read_text(encoding="utf-8"), encoding="utf-8")
        saving = Path(folder) / "saving.yaml"
        saving.write_text(plain.read_text() + f"checkpoint: {{every: {args.every}}}\n")
        seconds: dict[str, list[float]] = {"plain": [], "saving": []}
        per_checkpoint: list[float] = []
        for _ in range(args.repeat):
            for name, scenario in (("plain", plain), ("saving", saving)):
                output = Path(folder) / f"{name}.h5"
                run_scenario(scenario, output, plot=False)
                with h5py.File(output) as file:
                    seconds[name].append(float(file.attrs["run_seconds"]))
                    if name == "saving":
                        per_checkpoint.append(float(file.attrs["checkpoint_seconds"])
                                              / int(file.attrs["checkpoints"]))
                assert not checkpoint_path(output).exists()
    a, b = statistics.median(seconds["plain"]), statistics.median(seconds["saving"])
    print(f"flagship, 20 s simulated, checkpoint every {args.every:g} s; medians of "
          f"{args.repeat} alternating runs")
    print(f"  without checkpoints  {a:7.3f} s")
    print(f"  with checkpoints     {b:7.3f} s   ratio {b / a:.3f}")
    print(f"  per checkpoint       {statistics.median(per_checkpoint) * 1e3:7.2f} ms "
          f"(flush, serialise 5 FMUs, write); file {statistics.median(sizes) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
