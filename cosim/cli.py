"""The ``cosim`` command: parses arguments and calls library functions, nothing more.

Exit codes (the constants below; documented in ``docs/failures.md`` and ``cosim --help``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from cosim.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERDICT_FAIL,
    CosimError,
    Interrupted,
)
from cosim.launcher import limit_threads

EPILOG = f"""\
exit codes:
  {EXIT_OK:<4} success; for run: completed, verdict PASS (or no criteria)
  {EXIT_ERROR:<4} error: one message says what and where; previous results untouched
  {EXIT_VERDICT_FAIL:<4} run completed, verdict FAIL (a cohort: a member failed or did not complete)
  {EXIT_USAGE:<4} usage error: wrong command line
  {EXIT_INTERRUPTED:<4} interrupted by SIGINT (Ctrl-C) or SIGTERM

documentation: README.md, docs/tutorial.md (from zero to your own FMU in a scenario),
docs/scenario-format.md, docs/results-format.md, docs/failures.md"""


class _Parser(argparse.ArgumentParser):
    """argparse exiting with EXIT_USAGE (its own 2 would read as a FAIL verdict)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """An argument that must be a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argument that must be a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _parser() -> _Parser:
    from cosim import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="cosim", formatter_class=formatter, epilog=EPILOG,
                     description=textwrap.fill(
                         "Multiscale FMI co-simulation of medical digital twins: couple FMUs "
                         "described by a scenario file, run them into one HDF5 results file, "
                         "and judge the acceptance criteria into a verdict.", 88))
    parser.add_argument("--version", action="version", version=f"cosim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, text: str, description: str) -> _Parser:
        return sub.add_parser(name, help=text, description=textwrap.fill(description, 88),
                              epilog=EPILOG, formatter_class=formatter)

    run = command("run", "run a scenario into an HDF5 results file, with a verdict",
                  "Run a scenario in a supervised worker process; write the results file, "
                  "the plot (PNG) and the report (HTML) beside it; print the verdict.")
    run.add_argument("scenario", type=Path, help="the scenario file (docs/scenario-format.md)")
    run.add_argument("-o", "--output", type=Path, help="results file (default results/<name>.h5)")
    run.add_argument("--no-plot", action="store_true",
                     help="do not write the PNG plot and the HTML report")
    run.add_argument("--resume", nargs="?", const=True, default=False, type=Path,
                     metavar="FILE", help="go on with a run that did not complete: from its last "
                     "checkpoint (checkpoint: in the scenario), or a cohort's unfinished "
                     "members; FILE: its partial results file (default: the newest beside -o)")
    run.add_argument("--memory-limit", type=positive_float, default=None, metavar="GB",
                     help="address space the run may use; above it allocations fail")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no progress line and no summary; errors only (the exit code tells "
                          "the verdict)")
    check = command("check", "check a scenario and its FMUs without running",
                    "Read the scenario and its FMUs and check everything a run would need, "
                    "starting each instance: every problem with its file, line and key.")
    check.add_argument("scenario", type=Path, help="the scenario file")
    info = command("info", "describe an FMU: variables, units, dependencies",
                   "Describe an FMU: FMI version and interfaces, platforms, SHA-256, and every "
                   "variable with its type, unit, start value and description.")
    info.add_argument("fmu", type=Path, help="an .fmu file")
    graph = command("graph", "summarise the coupling graph and write a DOT file",
                    "The instances and connections of a scenario, the data-flow order, "
                    "algebraic loops and, with --ranks, the partition over MPI ranks.")
    graph.add_argument("scenario", type=Path, help="the scenario file")
    graph.add_argument("-o", "--output", type=Path, help="DOT file (default <scenario>.dot)")
    graph.add_argument("--ranks", type=positive_int, default=None, metavar="N",
                       help="show the partition over N MPI ranks (N >= 1)")
    report = command("report", "write the HTML report of a results file",
                     "One self-contained HTML file: context of use, model risk, coupling graph, "
                     "the models' verification and validation evidence, verdict table, plots "
                     "with the criteria drawn, cohort distributions, provenance.")
    report.add_argument("results", type=Path, help="a results file written by cosim run")
    report.add_argument("-o", "--output", type=Path, help="HTML file (default <results>.html)")
    report.add_argument("--evidence", type=Path, default=None, metavar="DIR",
                        help="folder of the models' recorded test evidence "
                             "(default build/evidence of this checkout)")
    export = command("export-ssp", "write a scenario as an SSP archive with its FMUs",
                     "Write the scenario's system (FMUs, parameters, connections with their "
                     "linear transformations, units, time grid) as an SSP 1.0 archive that "
                     "other SSP tools (libcosim, OMSimulator) load. Criteria, recording and "
                     "events are cosim's and are not part of SSP.")
    export.add_argument("scenario", type=Path, help="the scenario file")
    export.add_argument("-o", "--output", type=Path, help="SSP file (default <scenario>.ssp)")
    imported = command("import-ssp", "turn an SSP archive into a scenario file",
                       "Read an SSP 1.0 archive (or its folder, or a .ssd file), check it "
                       "against the SSP schema, extract its FMUs and write a scenario file "
                       "beside them; add criteria and recording to it, then cosim run it.")
    imported.add_argument("ssp", type=Path, help="an .ssp archive, its folder, or a .ssd file")
    imported.add_argument("-o", "--output", type=Path, default=None, metavar="FOLDER",
                          help="folder for the scenario and FMUs (default <ssp name>/)")
    imported.add_argument("--step", type=positive_float, default=None, metavar="S",
                          help="communication step in seconds, if the SSP gives none")
    fit = command("fit", "fit a twin's parameters to measured data; write and run the "
                  "personalised scenario",
                  "Estimate the parameters of the scenario's fit section from its measured "
                  "targets (every model evaluation a cohort member: under mpiexec over the "
                  "ranks, the same result at any rank count), write the personalised scenario "
                  "beside it and run it into a results file holding the fit (docs/twins.md).")
    fit.add_argument("scenario", type=Path, help="a scenario with a fit: section")
    fit.add_argument("-o", "--output", type=Path,
                     help="results file (default results/<name>.personalised.h5)")
    fit.add_argument("--personalised", type=Path, default=None, metavar="FILE",
                     help="personalised scenario (default <scenario>.personalised.yaml beside "
                          "it: its relative paths stay valid)")
    fit.add_argument("--no-plot", action="store_true", help="no PNG and HTML report")
    summary = command("summary", "write a results file's summary: verdicts, figures, fitted "
                      "parameters, no time series",
                      "What may leave the site where patient data live: the verdict and "
                      "criteria figures, a cohort's summary, the fitted parameters with their "
                      "uncertainty, the patient's pseudonym and the data files' hashes; no time "
                      "series, no measured values (docs/twins.md, 'Privacy').")
    summary.add_argument("results", type=Path, help="a results file")
    summary.add_argument("-o", "--output", type=Path,
                         help="JSON file (default <results>.summary.json)")
    pack = command("pack", "one self-contained file from results that link to part files",
                   "A run under mpiexec leaves its results file linking to the ranks' part "
                   "files in the folder beside it (<stem>.data-<run>/, docs/cluster.md); pack "
                   "writes a copy with every link resolved, to archive or send alone.")
    pack.add_argument("results", type=Path, help="a results file")
    pack.add_argument("-o", "--output", type=Path,
                      help="the packed file (default <results>.packed.h5)")
    build = command("build-fmus", "build the model library in fmus/ into FMUs (only what "
                    "changed)", "Build the library's FMUs into build/fmus (the C editions, "
                    "and the C models as FMI 3.0 FMUs into build/fmus/fmi3; with --python "
                    "also the Python editions); an FMU is rebuilt only when its sources "
                    "changed.")
    build.add_argument("-o", "--output", type=Path, default=None,
                       help="folder for the FMUs (default build/fmus)")
    build.add_argument("--python", action="store_true",
                       help="also build the Python editions of the C models into <output>/python")
    return parser


def main(argv: list[str] | None = None) -> int:
    limit_threads()  # before anything imports numpy: one BLAS thread (cosim/launcher.py)
    args = _parser().parse_args(argv)  # a usage error exits EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except CosimError as error:
        from cosim.launcher import rank_and_size

        # under MPI every rank finds the same errors; the rank comes from the launcher's
        # environment: this process (a supervisor, or a command) must not initialise MPI
        if rank_and_size()[0] == 0:
            print(f"error: {_with_notes(error)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into `head`
        return EXIT_OK
    except KeyboardInterrupt as stop:  # a run stopped (its message), or Ctrl-C outside one
        from cosim.launcher import rank_and_size

        text = _with_notes(stop, None if isinstance(stop, Interrupted) and stop.args
                           else "interrupted")
        if text and rank_and_size()[0] == 0:  # under MPI: rank 0 says it once
            print(text, file=sys.stderr)
        return EXIT_INTERRUPTED


def _with_notes(error: BaseException, text: str | None = None) -> str:
    """The message (or ``text``) and the notes added on the way up (e.g. where partial results
    are kept)."""
    return "\n".join([str(error) if text is None else text,
                      *getattr(error, "__notes__", ())]).strip()


def _run(args) -> int:
    from cosim.api import run
    from cosim.results.output_path import check_output_path

    output = args.output or Path("results") / f"{args.scenario.stem}.h5"
    check_output_path(output)
    done = run(args.scenario, output, supervised=True, plot=not args.no_plot,
               resume=args.resume, quiet=args.quiet,
               memory_limit=args.memory_limit * 1e9 if args.memory_limit else None)
    if done.text and not args.quiet:  # under MPI: rank 0's
        print(done.text, flush=True)
    return done.exit_code


def _check(args) -> int:
    from cosim.describe import check_text

    print(check_text(args.scenario))
    return EXIT_OK


def _info(args) -> int:
    from cosim.describe import fmu_text

    print(fmu_text(args.fmu))
    return EXIT_OK


def _graph(args) -> int:
    from cosim.describe import graph_text

    print(graph_text(args.scenario, args.output, args.ranks))
    return EXIT_OK


def _results_file(path: Path) -> Path:
    """``path`` if it is a file (the commands that read a results file), else one line."""
    if not path.is_file():
        raise CosimError(f"{path}: no such results file")
    return path


def _report(args) -> int:
    from cosim.results.report import write_report
    from cosim.scenario.credibility import EVIDENCE

    written = write_report(_results_file(args.results), args.output, args.evidence or EVIDENCE)
    print(f"report: {written}")
    return EXIT_OK


def _fit(args) -> int:
    from cosim.api import fit
    from cosim.launcher import rank_and_size

    done = fit(args.scenario, args.output, personalised=args.personalised,
               plot=not args.no_plot)
    if rank_and_size()[0] == 0:
        print(done.result.text())
        print(f"personalised scenario: {done.personalised}")
        print(done.report.text())
    return EXIT_OK if done.report is None or done.report.passed is not False \
        else EXIT_VERDICT_FAIL


def _pack(args) -> int:
    from cosim.results.pack import pack

    results = _results_file(args.results)
    print(f"packed: {pack(results, args.output or results.with_suffix('.packed.h5'))}")
    return EXIT_OK


def _summary(args) -> int:
    from cosim.twins.privacy import write_summary

    output = args.output or args.results.with_suffix(".summary.json")
    print(f"summary: {write_summary(_results_file(args.results), output)}")
    return EXIT_OK


def _export_ssp(args) -> int:
    from cosim.scenario.ssp import export_ssp

    print(f"ssp: {export_ssp(args.scenario, args.output or args.scenario.with_suffix('.ssp'))}")
    return EXIT_OK


def _import_ssp(args) -> int:
    from cosim.scenario.ssp import import_ssp

    folder = args.output or args.ssp.with_suffix("")
    print(f"scenario: {import_ssp(args.ssp, folder, args.step)}")
    return EXIT_OK


def _build(args) -> int:
    from cosim.library.build import DEFAULT_OUTPUT, build_library

    for fmu, built in build_library(args.output or DEFAULT_OUTPUT, python=args.python):
        print(f"{'built' if built else 'up to date'} {fmu}")
    return EXIT_OK


COMMANDS = {"run": _run, "check": _check, "info": _info, "graph": _graph, "build-fmus": _build,
            "report": _report, "export-ssp": _export_ssp, "import-ssp": _import_ssp,
            "fit": _fit, "summary": _summary, "pack": _pack}

if __name__ == "__main__":
    sys.exit(main())
