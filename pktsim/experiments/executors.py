"""Where a sweep's points run: local processes, or a Dask cluster (``pktsim[cluster]``).

Both executors take a picklable function and its tasks and yield ``(task index, result)`` as the
tasks finish, in any order (the exception instead when a task could not finish:
a worker died); the sweep writes each row as it arrives. Neither schedules anything
itself: the local one is :class:`concurrent.futures.ProcessPoolExecutor`, the other
``distributed`` (a :class:`~distributed.LocalCluster` it starts, or a scheduler already running,
e.g. one started by ``dask-jobqueue`` on Slurm).
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Protocol, Sequence

from pktsim import __version__
from pktsim.errors import InputError

DASK_CONNECT_S = 10
"""How long ``--dask tcp://...`` waits for the scheduler (s)."""
DASK_WORKERS_S = 60
"""How long it waits for the scheduler's first worker (s)."""


class Executor(Protocol):
    """Runs tasks somewhere and hands back their results as they finish."""

    workers: int
    """How many tasks run at once (for the progress bar's running count)."""
    where: str
    """One line for people: ``2 local processes``, ``Dask LocalCluster, 2 workers``."""

    def results(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ...

    def close(self) -> None:
        ...


class LocalProcesses:
    """``--jobs N``: N worker processes (N = 1 runs the tasks in this process, one by one)."""

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise InputError("--jobs", "", f"must be at least 1 (got {jobs})")
        self.workers = jobs
        self.where = "this process" if jobs == 1 else f"{jobs} local processes"
        self._pool: ProcessPoolExecutor | None = None

    def results(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self.workers == 1:
            for i, task in enumerate(tasks):
                yield i, fn(task)
            return
        self._pool = ProcessPoolExecutor(max_workers=self.workers)
        futures = {self._pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            yield futures[future], _outcome(future)
        self._pool.shutdown()  # every task is done: the workers exit at once
        self._pool = None

    def close(self) -> None:
        """Stopped early (a signal, an error): the queued tasks are dropped and the running ones
        abandoned, their workers terminated. Without that a SIGTERM sent to this process alone
        (``timeout``, Slurm) would wait for the running points, which may take hours, since the
        interpreter joins the pool's workers when it exits."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14: all of this
        if terminate is not None:
            terminate()
            return
        workers = list(pool._processes.values())  # shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()


def _outcome(future: Any) -> Any:
    """A finished future's result, or the exception that ended it (a worker that died, a task that
    could not be sent): the sweep writes it as the point's error row and goes on."""
    try:
        return future.result()
    except Exception as e:
        return e


def _probe(address: str) -> None:
    """Fail at once when nothing listens at a ``tcp://HOST:PORT`` scheduler address (distributed
    itself retries a refused connection until its timeout)."""
    import socket

    if not address.startswith("tcp://"):
        return
    host, _, port = address[len("tcp://"):].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=DASK_CONNECT_S).close()
    except ValueError:
        raise InputError("--dask", "", f"expected tcp://HOST:PORT (got {address!r})") from None
    except OSError as e:
        raise InputError("--dask", "", f"cannot reach the scheduler at {address}: {e.strerror or e}") from None


def _worker_version() -> str:
    import pktsim

    return pktsim.__version__


class DaskCluster:
    """``--dask local`` (a LocalCluster of ``workers`` single-threaded processes, stopped at the
    end) or ``--dask tcp://HOST:PORT`` (a running scheduler; its workers must have this version of
    pktsim installed, which is checked before anything runs)."""

    def __init__(self, address: str, workers: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("--dask", "", "needs dask.distributed: pip install 'pktsim[cluster]'") from None
        if workers < 1:
            raise InputError("--workers", "", f"must be at least 1 (got {workers})")
        self._cluster = None
        if address == "local":
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
            self.where = f"Dask LocalCluster, {workers} workers"
        else:
            if not address.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
                raise InputError("--dask", "", f"expected local or a scheduler address such as "
                                 f"tcp://HOST:8786 (got {address!r})")
            _probe(address)
            try:
                self.client = Client(address, timeout=f"{DASK_CONNECT_S}s")
            except (OSError, TimeoutError) as e:
                raise InputError("--dask", "", f"cannot reach the scheduler at {address}: {e}") from None
            try:
                self.client.wait_for_workers(1, timeout=DASK_WORKERS_S)
            except TimeoutError:
                self.close()
                raise InputError("--dask", "", f"the scheduler at {address} has no workers after "
                                 f"{DASK_WORKERS_S} s (start some: dask worker {address})") from None
            self.where = f"Dask scheduler {address}"
        versions = self.client.run(_worker_version)
        wrong = {w: v for w, v in versions.items() if v != __version__}
        if wrong:
            worker, version = next(iter(wrong.items()))
            self.close()
            raise InputError("--dask", "", f"worker {worker} has pktsim {version}, this is {__version__} "
                             f"(install the same version on every worker)")
        self.workers = max(1, sum(self.client.nthreads().values()))
        if self._cluster is None:
            self.where += f", {self.workers} worker threads"

    def results(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed as dask_completed

        futures = self.client.map(fn, list(tasks), pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for future in dask_completed(futures):
            yield index[future.key], _outcome(future)

    def close(self) -> None:
        """Disconnect (and stop a LocalCluster); again is a no-op."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def open_executor(jobs: int, dask: str | None, workers: int | None) -> Executor:
    """The executor the command line asks for: ``--dask`` (with ``--workers``, default 2 for a
    LocalCluster) or ``--jobs`` local processes."""
    if dask is None:
        if workers is not None:
            raise InputError("--workers", "", "sizes a Dask LocalCluster: give it with --dask local "
                             "(local processes are --jobs)")
        return LocalProcesses(jobs)
    if workers is not None and dask != "local":
        raise InputError("--workers", "", "a running scheduler has its own workers (only --dask local starts some)")
    return DaskCluster(dask, workers if workers is not None else 2)
