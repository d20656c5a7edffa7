"""Running independent tasks on a ``dask.distributed`` cluster.

Functions that can spread their work over gene groups take ``client=`` (a
:class:`distributed.Client` the user made, for a cluster of any size) or ``n_jobs=`` (a
local cluster of that many worker processes, one thread each, made for the call and closed
after it). Each task owns its own output (a part store, or a chunk-aligned block of rows of
an array), so tasks never write to the same file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "cluster",
    "is_distributed",
    "loaded_once",
    "run_tasks",
    "saved_models",
    "store_on_disk",
    "task_slots",
]

#: In each worker process: what :func:`loaded_once` loaded, by path, file stamps and options.
_LOADED: dict[tuple, Any] = {}


def is_distributed(client: Any, n_jobs: int | None) -> bool:
    """Whether a call runs on a cluster (a client was given, or ``n_jobs`` > 1)."""
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs < 1):
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    return client is not None or (n_jobs or 1) > 1


@contextmanager
def cluster(client: Any, n_jobs: int | None) -> Iterator[Any]:
    """The client to run on: ``client`` itself, or a local cluster of ``n_jobs`` workers.

    A local cluster has one thread per worker process (the tasks hold the GIL in Python
    and numba code) and is closed when the block ends. Its workers start without dask's
    ``MALLOC_TRIM_THRESHOLD_=65536`` (:func:`worker_environment`).
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with worker_environment():
        local = LocalCluster(
            n_workers=n_jobs or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    with local, Client(local) as made:
        yield made


#: Dask settings of the worker processes :func:`cluster` starts. Dask sets
#: ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers by default, so that glibc returns freed
#: memory to the system early; PyTorch then pays for page faults on every large tensor,
#: and in-silico mutagenesis ran 1.4x slower in such a worker than in one without it
#: (benchmarks/bench_attribution_workers.py). ``None`` leaves the variable unset.
WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextmanager
def worker_environment() -> Iterator[None]:
    """Worker processes started in this block get :data:`WORKER_ENVIRONMENT`.

    Dask's nannies also write their variables into this process's ``os.environ`` before
    spawning (and leave them there), so a cluster started earlier with dask's defaults
    would pass ``MALLOC_TRIM_THRESHOLD_`` on by inheritance: it is taken out of
    ``os.environ`` for the block and put back afterwards.
    """
    import dask

    inherited = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with dask.config.set(WORKER_ENVIRONMENT):
            yield
    finally:
        if inherited is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = inherited


def task_slots(client: Any) -> int:
    """How many tasks ``client``'s cluster runs at once (its worker threads; at least 1)."""
    return max(sum(client.nthreads().values()), 1)


def run_tasks(
    client: Any,
    function: Callable[..., Any],
    arguments: Iterable[dict[str, Any]],
    *,
    progress: bool,
    description: str,
    unit: str = "task",
    total: int | None = None,
    max_in_flight: int | None = None,
) -> list[Any]:
    """Run ``function(**a)`` for each ``a`` of ``arguments`` on ``client``; results in order.

    ``arguments`` may be a generator: with ``max_in_flight``, at most that many tasks are
    submitted and not yet finished at once, so the inputs the main process makes for them
    (and their results) are held for a bounded number of tasks. A failed task's exception
    is raised here, as it was raised on the worker, after the other tasks are cancelled.
    """
    from uuid import uuid4

    from distributed import as_completed
    from tqdm.auto import tqdm

    if total is None and isinstance(arguments, Sized):
        total = len(arguments)
    todo = iter(enumerate(arguments))
    token = uuid4().hex[:8]  # keys unique to this call, whatever ran on the client before
    running: dict[str, tuple[int, Any]] = {}
    finished = as_completed()

    def submit() -> bool:
        for i, kwargs in todo:
            future = client.submit(function, **kwargs, pure=False, key=f"{description}-{token}-{i}")
            running[future.key] = (i, future)
            finished.add(future)
            return True
        return False

    while (max_in_flight is None or len(running) < max_in_flight) and submit():
        pass
    results: dict[int, Any] = {}
    try:
        with tqdm(total=total, disable=not progress, desc=description, unit=unit) as bar:
            for future in finished:
                i, _ = running.pop(future.key)
                results[i] = future.result()
                future.release()
                bar.update()
                submit()
    except BaseException:
        client.cancel([future for _, future in running.values()])
        raise
    return [results[i] for i in range(len(results))]


def loaded_once(path: str | os.PathLike, load: Callable[[], Any], *options: Any) -> Any:
    """``load()`` the first time a worker process needs what lies at ``path`` (a model
    folder, a store), then the same object for every later task with the same ``options``.

    The key holds the size and modification time of every file directly in ``path``, so a
    folder written again (a model retrained into the same place) is loaded again.
    """
    folder = Path(os.path.abspath(os.fspath(path)))
    files = sorted(folder.iterdir()) if folder.is_dir() else [folder]
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())
    key = (os.fspath(folder), stamp, options)
    if key not in _LOADED:
        _LOADED[key] = load()
    return _LOADED[key]


def saved_models(what: str, **models: Any) -> None:
    """Refuse models given as objects to work that runs on workers (each loads its own
    copy from a folder); ``None`` means not given."""
    for name, model in models.items():
        if model is not None and not isinstance(model, str | os.PathLike):
            raise TypeError(
                f"{what} on several workers loads the model in each worker: pass {name}= as "
                "the path of a saved model folder"
            )


def store_on_disk(adata: Any, what: str) -> str:
    """Where ``adata``'s store lives, refused when it is in memory (workers read it)."""
    from .store import store_location
    from .store.common import _MEMORY_PREFIX

    location = store_location(adata)
    if location.startswith(_MEMORY_PREFIX):
        raise ValueError(
            f"{what} on several workers works on the cohort's store on disk: write it "
            "with gl.write (or build it with store=) first"
        )
    return location
