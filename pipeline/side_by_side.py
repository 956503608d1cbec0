"""Run independent jobs side by side: the stage-2 and baseline trainings, an experiment's arms.

Each job spends its time in a child process (Axolotl), so threads are enough; on a CPU
machine a training is mostly single-threaded start-up (imports, tokenising, saving), and
two of them overlap well (`train.concurrent`, bench/README.md §4). Side by side, each job's
tools get an equal share of the cores (procs.sharing_cores). `width` 1 runs the jobs one
after another in the calling thread, exactly as a plain loop would.

Ctrl-C and SIGTERM reach the main thread only: it stops every child process the jobs are
running (procs.stop_all), waits for their threads, reports each interrupted job, and
re-raises, so the caller records every job's end before the run stops.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable

from pipeline.procs import sharing_cores, stop_all

Done = Callable[[int, Any, "BaseException | None"], None]


def run_side_by_side(jobs: list[Callable[[], Any]], width: int, on_done: Done = lambda i, result, error: None) -> list:
    """Run `jobs`, at most `width` at once, in order of start; `on_done(i, result, error)` is called
    in this thread as job i ends. After a job fails no further job starts; those running finish
    (their work is kept), then the first error is raised. Returns the results in job order."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def end(i: int, result: Any, error: BaseException | None) -> None:
        results[i] = result
        if error is not None:
            errors.append(error)
        on_done(i, result, error)

    if width <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            try:
                result = job()
            except BaseException as e:
                end(i, None, e)
                raise
            end(i, result, None)
        return results
    width = min(width, len(jobs))

    def shared(job: Callable[[], Any]) -> Any:
        with sharing_cores(width):
            return job()

    todo = list(enumerate(jobs))
    running: dict[Future, int] = {}
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="side-by-side")
    try:
        while todo or running:
            while todo and len(running) < width and not errors:
                i, job = todo.pop(0)
                running[pool.submit(shared, job)] = i
            if not running:
                break
            # a timeout, so that a signal delivered to another thread is still handled within a second
            finished, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                end(i, None if future.exception() else future.result(), future.exception())
    except BaseException as interrupt:  # KeyboardInterrupt (Ctrl-C, SIGTERM): stop the others' children
        stop_all(grace=30)
        for future, i in running.items():
            wait([future])
            if future.exception() is None:  # it had finished before the children were stopped
                end(i, future.result(), None)
            else:
                end(i, None, interrupt)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]
    return results
