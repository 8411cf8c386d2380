"""The run directory's lifecycle: a directory that says it is incomplete from its first moment
until its last output is written, files that are never half-written, and SIGTERM/SIGINT turned
into an orderly stop (flush, say why, exit 128 + the signal).

Used by the command line for ``run``, ``validate``, ``sweep`` and diagnosis evaluation directories.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pktsim.experiment import Backend, Experiment, Progress
    from pktsim.summary import RunSummary

def fresh_path(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... when it exists."""
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


MARKER = "INCOMPLETE"


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived during a run (a BaseException, like KeyboardInterrupt, so that
    ``except Exception`` clean-ups do not swallow it). ``out``: the directory left incomplete."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.out: Path | None = None

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


class StopOnSignals:
    """While active, SIGTERM and SIGINT raise :class:`Stopped` in the main thread (each time: a
    second signal interrupts the clean-up of the first). Previous handlers are restored on exit.
    Outside the main thread (where Python cannot install handlers) it does nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> StopOnSignals:
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise Stopped(signum)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` under a temporary name and rename it into place: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def create_marked(out: Path, what: str) -> None:
    """Create the directory ``out`` holding ``INCOMPLETE`` from its first moment (a new directory
    is made under a temporary name with the marker inside, then renamed into place)."""
    from pktsim.traces import FLUSH_S

    kept = {
        "run": f"its tables hold the rows written up to their last flush (every {FLUSH_S:g} s of wall time "
               f"and every traces.part_rows rows)",
        "validation": "the runs under it say how far they got",
        "sweep": "sweep.parquet holds a row for every point that finished; run the sweep again into this "
                 "directory to resume it",
        "evaluation": "the diagnoses of its finished runs were not kept",
    }[what]
    text = (f"running since {_now()} (pid {os.getpid()})\n"
            f"This {what} has not finished: this file is removed once {LAST_OUTPUT[what]} has been written. "
            f"If it is still here when no pktsim process is running, the {what} was killed outright "
            f"(kill -9, out of memory, power loss): {kept}.\n")
    if out.is_dir():  # an empty directory the user made for it
        write_atomic(out / MARKER, text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_path(out.with_name(f".{out.name}.new-{os.getpid()}"))
    tmp.mkdir()
    try:
        (tmp / MARKER).write_text(text)
        os.rename(tmp, out)
    except BaseException:
        (tmp / MARKER).unlink(missing_ok=True)
        tmp.rmdir()
        raise


LAST_OUTPUT = {"run": "summary.json", "validation": "validation.json", "sweep": "the last point's row",
               "evaluation": "evaluation.json"}


def _reason(error: BaseException) -> str:
    if isinstance(error, Stopped):
        return f"stopped by {error.signame} at {_now()}"
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted (KeyboardInterrupt) at {_now()}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"failed at {_now()}: {type(error).__name__}" + (f": {first}" if first else "")


def mark_incomplete(out: Path, what: str, error: BaseException, done: str) -> None:
    """Write why ``out`` did not finish into its marker (nothing when its last output exists: the
    work was done and only the marker's removal was interrupted; or when ``out`` was never made)."""
    if not out.is_dir():
        return
    if (out / LAST_OUTPUT[what]).exists():
        (out / MARKER).unlink(missing_ok=True)
        return
    if isinstance(error, Stopped):
        error.out = out  # the outermost directory wins (a validation's, not its packet run's)
    write_atomic(out / MARKER, f"{_reason(error)}\nThis {what} did not finish: {LAST_OUTPUT[what]} is missing "
                                f"and {done}.\n")


def record_run(engine: Backend, experiment: Experiment, out: Path,
               progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Run ``experiment`` on ``engine`` into the run directory ``out``: INCOMPLETE from the
    start, the tables (flushed every few seconds, see :meth:`pktsim.traces.Recorder.tick`), then
    summary.json, then INCOMPLETE removed. On any exception (:class:`Stopped` included) every
    table's buffered rows are flushed and the reason is written into INCOMPLETE."""
    from pktsim.traces import FLUSH_S, Recorder

    scenario = experiment.scenario
    recorder = None
    try:
        create_marked(out, "run")
        recorder = Recorder(out, scenario.model_dump(mode="json"), scenario.traces.part_rows,
                            getattr(scenario.traces, "flush_s", FLUSH_S))

        def tick(p: Progress) -> None:
            recorder.tick()
            if progress is not None:
                progress(p)

        summary = engine.run(experiment, recorder, tick)
        summary.out = str(out)
        # summary.json is written last: a run directory without it is incomplete.
        write_atomic(out / "summary.json", json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n")
        (out / MARKER).unlink()
    except BaseException as error:
        mark_incomplete(out, "run", error, "its tables are being flushed")
        done = ("every table was flushed: messages, flows and collectives hold every one finished before it "
                "stopped; queues and links end at their last block of traces.part_rows rows; congestion is "
                "computed at the end")
        if recorder is not None:
            try:
                recorder.close()
            except Exception as e:  # keep the original error; say what was lost
                done = f"flushing the tables failed ({type(e).__name__}: {e}): they end at their last flush"
        mark_incomplete(out, "run", error, done)
        raise
    return summary
