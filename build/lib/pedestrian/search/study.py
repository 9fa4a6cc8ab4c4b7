"""The study: an Optuna storage many workers share, the plan of trials in it, and the worker loop.

Storage: any SQLAlchemy URL. The default is a SQLite file next to the results (workers on one machine); a
PostgreSQL URL (`postgresql://user:pass@host/db`) lets workers on many machines join the same study.

Why a loop of our own instead of `study.optimize`: `optimize(n_trials=n)` gives every worker n trials, and a
stop-when-done callback overshoots when two workers finish at once. Here the study is created with its whole
plan as queued (WAITING) trials, and a worker only ever *claims* a queued trial; claiming is one atomic state
change in the database, so N workers run exactly the planned trials, none twice. Each running trial beats a
heartbeat; a worker that dies stops beating, and the next worker to look marks its trial FAIL and queues a copy
with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback): a killed worker loses only its running
trial, and a restarted worker simply joins the study again.
"""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from pedestrian.base.errors import ConfigError
from pedestrian.search.methods import Ticket

optuna.logging.set_verbosity(optuna.logging.WARNING)
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (trials.csv)


def open_storage(url: str, heartbeat_s: int, grace_s: int, attempts: int = 5) -> RDBStorage:
    """The study's storage. Workers starting together may race to create the tables: the loser tries again."""
    path = url.split(":///", 1)[-1] if _sqlite(url) else ""
    if path and ":memory:" not in path:  # WAL: readers never wait for the writer (set once, kept by the file)
        con = sqlite3.connect(path, timeout=600)
        con.execute("PRAGMA journal_mode=WAL")
        con.close()
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 600}} if _sqlite(url) else {},
                                     heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
            break
        except (SQLAlchemyError, StorageInternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    if _sqlite(url):
        _serialise(storage)
    return storage


def _sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _serialise(storage: RDBStorage) -> None:
    """SQLite ignores SELECT ... FOR UPDATE and Python's driver starts transactions lazily, so two workers can
    both read a queued trial as WAITING and both claim it. BEGIN IMMEDIATE takes the write lock at the start of
    every transaction, which makes Optuna's read-check-write steps atomic (SQLAlchemy's documented recipe)."""
    @event.listens_for(storage.engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # the driver's own BEGIN off; we issue ours
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe if a process dies, no fsync per commit

    @event.listens_for(storage.engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # connections opened before the listeners existed


def open_study(name: str, storage: RDBStorage, spec: dict, tickets: list[Ticket],
               pruner: optuna.pruners.BasePruner, wait_s: float = 60.0) -> tuple[optuna.Study, bool]:
    """Create the study with its plan, or join it. Exactly one process wins the creation (a unique name in the
    database); the others wait until the plan is queued and check that they run the same search."""
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", pruner=pruner)
    except DuplicatedStudyError:
        return _join(name, storage, spec, pruner, wait_s), False
    study.set_user_attr("spec", spec)
    for t in tickets:
        study.enqueue_trial(t.params or {}, user_attrs={"round": t.round, "index": t.index})
    study.set_user_attr("planned", len(tickets))  # last: joiners wait for it
    return study, True


def _join(name: str, storage: RDBStorage, spec: dict, pruner: optuna.pruners.BasePruner,
          wait_s: float) -> optuna.Study:
    study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    deadline = time.time() + wait_s
    while "planned" not in study.user_attrs:
        if time.time() > deadline:
            raise ConfigError(f"study {name!r} in {storage.url} has no complete plan (its creator died while "
                              "setting it up?): delete it or pick another search.study")
        time.sleep(0.5)
    theirs = study.user_attrs["spec"]
    diff = sorted(k for k in set(spec) | set(theirs) if spec.get(k) != theirs.get(k))
    if diff:
        raise ConfigError(f"study {name!r} in {storage.url} was created by a different search (differs in "
                          f"{', '.join(diff)}): use another search.study, or the same settings to join it")
    return study


def round_of(t: FrozenTrial) -> int:
    return int(t.user_attrs.get("round", 0))


def next_ticket(trials: list[FrozenTrial]) -> FrozenTrial | None | bool:
    """The queued trial to start next; None when nothing is left to start; False to wait (a new coarse-to-fine
    round waits for every trial of the rounds before it to finish: its ranges come from their results)."""
    waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: (round_of(t), t.number))
    running = [round_of(t) for t in trials if t.state == TrialState.RUNNING]
    if not waiting:
        return False if running else None
    if running and min(running) < round_of(waiting[0]):
        return False
    return waiting[0]


def claim(storage: RDBStorage, t: FrozenTrial) -> bool:
    """WAITING -> RUNNING in one transaction; False when another worker was first."""
    try:
        return storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING)
    except UpdateFinishedTrialError:
        return False


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int):
    """Record 'alive' every heartbeat interval while the trial runs (what study.optimize does for its trials)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(storage.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def work(study: optuna.Study, storage: RDBStorage, objective: Callable[[optuna.Trial], float],
         params_for: Callable[[FrozenTrial, list[FrozenTrial]], dict | None],
         sampler_for: Callable[[int], optuna.samplers.BaseSampler], log: Callable[[str], None] = print,
         poll_s: float = 1.0) -> int:
    """Claim and run queued trials until none is left to start or running; returns how many this worker ran."""
    ran = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial -> FAIL, and queued again
        trials = study.get_trials(deepcopy=False)
        ticket = next_ticket(trials)
        if ticket is None:
            return ran
        if ticket is False or not claim(storage, ticket):
            time.sleep(poll_s if ticket is False else 0.05)
            continue
        _run_trial(study, storage, ticket, trials, objective, params_for, sampler_for, log)
        ran += 1


def _run_trial(study: optuna.Study, storage: RDBStorage, ticket: FrozenTrial, trials: list[FrozenTrial],
               objective: Callable[[optuna.Trial], float],
               params_for: Callable[[FrozenTrial, list[FrozenTrial]], dict | None],
               sampler_for: Callable[[int], optuna.samplers.BaseSampler], log: Callable[[str], None]) -> None:
    tid = ticket._trial_id
    if not ticket.system_attrs.get("fixed_params") and not ticket.params:
        params = params_for(ticket, trials)  # a narrowed coarse-to-fine round's point (None: the sampler picks)
        if params:
            storage.set_trial_system_attr(tid, "fixed_params", params)
    study.sampler = sampler_for(ticket.number)
    trial = optuna.Trial(study, tid)  # what study.ask() builds for a trial it took from the queue
    trial.set_user_attr("worker", WORKER)
    state, value = TrialState.COMPLETE, None
    with heartbeat(storage, tid):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM caught by pedestrian.core.signals
            study.tell(trial, state=TrialState.FAIL)
            storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(tid))  # not wrong: queue again
            raise
        except Exception as e:  # a trial that breaks is recorded as failed; the study goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            state = TrialState.FAIL
            log(f"trial {trial.number} failed: {type(e).__name__}: {e}")
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    shown = f"{value:.4g}" if value is not None else state.name.lower()
    log(f"trial {trial.number} (round {round_of(ticket)}): {shown}  {trial.params}")


def counts(trials: list[FrozenTrial]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out
