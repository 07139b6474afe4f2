"""The one place that talks to Ray: start or join a cluster, run stages over shard jobs.

Ray's argument names change between releases; keeping every call here means one file to
update. Each stage becomes a Ray Data `map_batches` over a fixed pool of actors (one shard
job per batch) with the stage's declared CPUs and GPUs, so the model loads once per actor and
every core and GPU of the machine or cluster is used. All of a pool's actors start at once and
each is handed one shard at a time, so none idles while another has shards queued. Results
stream back in completion order, so the driver commits each shard as soon as it is done.

Lost workers. A shard whose worker process dies is retried by Ray on the restarted actor,
SHARD_ATTEMPTS times in all, then given up (a clip that crashes the decoder must not loop
forever). A node that goes away is another matter: until Ray's health checks declare it dead
(seconds to tens of seconds), the tasks sent to its actors fail at once without running, and
use up their attempts. So every attempt is recorded as it starts and ends, by a small actor
on the driver's node (`_AttemptLedger`). When a round of the pipeline ends with shards
missing, a shard is run again in a new round, on the nodes still alive, unless one of its
attempts raised an exception (it would raise again) or it crashed its worker SHARD_ATTEMPTS
times in one stage on nodes that are still alive (a bad clip). Attempts that never started,
that ran on a node since lost, or whose output was lost with a node do not count. At most
NODE_LOSS_ROUNDS such rounds follow the first.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from typing import Iterator, Sequence

import numpy as np

from pipeline.run.stages import ShardJob, Stage


SHARD_ATTEMPTS = 3  # tries per shard when its worker dies (killed, out of memory, segfault)
NODE_LOSS_ROUNDS = 4  # rounds after the first for shards whose work was lost with a node


def init_ray(address: str | None = None, num_cpus: int | None = None,
             num_gpus: int | None = None) -> dict[str, float]:
    """Join `address` (a running cluster) or start a quiet local instance; return its resources.

    `num_gpus` (local only) declares GPUs to Ray; by default Ray counts the CUDA devices."""
    import ray

    # Ray's C++ core writes its warnings straight to the terminal (e.g. about actor restarts,
    # which we rely on); only fatal ones should reach the user. Its logs stay in its session
    # folder, /tmp/ray/session_latest/logs.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if not ray.is_initialized():
        local = {}
        if not address:
            local = {"num_cpus": num_cpus or os.cpu_count()}
            if num_gpus is not None:
                local["num_gpus"] = num_gpus
        # Without an address, "local" starts our own instance whatever Ray's record of the last
        # cluster on this machine (ray_current_cluster in its temp folder) or RAY_ADDRESS says:
        # after such a cluster is gone, address=None would try to join it and fail.
        try:
            with _stderr_silenced():  # the core announces the log level it just read, on stderr
                ray.init(address=address or "local", include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True, **local)
        except (ConnectionError, ray.exceptions.AuthenticationError) as err:
            if not address:
                raise
            hint = ("" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else
                    "; a cluster with token authentication takes only clients with RAY_AUTH_MODE=token and its "
                    "token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token): see docs/pipeline.md, Running on a cluster")
            raise RuntimeError(f"cannot join the Ray cluster at {address}: {err}{hint}") from err
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # A shard that kills its worker SHARD_ATTEMPTS times (a clip that crashes the decoder, or
    # runs it out of memory) is dropped, not the whole run: run_stages' caller sees it missing.
    ctx.max_errored_blocks = -1
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray.cluster_resources()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C++ code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class _AttemptLedger:
    """Every attempt at a shard in a stage: the node it ran on, the round, and how it ended
    ("started" while running, or never heard of again; "finished"; "raised"). One instance per
    run_stages call, on the driver's node, so that it outlives any worker node."""

    def __init__(self):
        self.attempts: dict[str, list[dict]] = {}

    def begin(self, stage: int, job: str, node: str, round_no: int) -> int:
        record = self.attempts.setdefault(f"{stage}/{job}", [])
        record.append({"node": node, "round": round_no, "state": "started"})
        return len(record) - 1

    def end(self, stage: int, job: str, attempt: int, state: str) -> None:
        self.attempts[f"{stage}/{job}"][attempt]["state"] = state

    def records(self) -> dict[str, list[dict]]:
        return self.attempts


class _StageActor:
    """Adapts a Stage to Ray Data's callable-class protocol, recording each attempt in the ledger."""

    def __init__(self, stage: Stage, ledger=None, stage_index: int = 0, round_no: int = 0):
        import ray

        self.stage, self.ledger, self.stage_index, self.round_no = stage, ledger, stage_index, round_no
        self.node = ray.get_runtime_context().get_node_id()
        stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"job": np.array([self._attempt(ShardJob.from_json(str(text))) for text in batch["job"]],
                                dtype=object)}

    def _attempt(self, job: ShardJob) -> str:
        # Waited for: the record must exist before the work that may kill this process starts.
        attempt = self._record("begin", job.name, self.node, self.round_no)
        try:
            done = self.stage.process(job).to_json()
        except BaseException:
            self._record("end", job.name, attempt, "raised")
            raise
        self._record("end", job.name, attempt, "finished")
        return done

    def _record(self, method: str, job: str, *args):
        """Tell the ledger; without one (or if it is gone) the shard goes on unrecorded."""
        if self.ledger is None or (method == "end" and args[0] is None):
            return None
        import ray

        try:
            return ray.get(getattr(self.ledger, method).remote(self.stage_index, job, *args))
        except ray.exceptions.RayError:
            return None


def _alive_nodes() -> dict[str, dict[str, float]]:
    """Node id -> resources, of the nodes Ray counts alive now."""
    import ray

    return {node["NodeID"]: dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")}


def _capacity(stage: Stage, nodes: dict[str, dict[str, float]]) -> int:
    """How many actors of `stage` the given nodes can hold at once, by their CPUs and GPUs."""
    total = 0
    for resources in nodes.values():
        fits = [math.floor(resources.get(name, 0) / need + 1e-9)
                for name, need in (("CPU", stage.num_cpus), ("GPU", stage.num_gpus)) if need]
        total += min(fits) if fits else 1
    return total


def stage_remote_args(stage: Stage, workers: int, jobs: int) -> dict:
    """What Ray is asked for, per actor of `stage`, in a pool of `workers` (fewer when there are
    fewer jobs): the stage's CPUs and GPUs (a fraction shares a GPU between actors)."""
    import ray

    return {
        "compute": ray.data.ActorPoolStrategy(size=max(1, min(workers, jobs)), max_tasks_in_flight_per_actor=1),
        "num_cpus": stage.num_cpus,
        "num_gpus": stage.num_gpus or None,
        # A dead actor is restarted and its shard retried from the start, SHARD_ATTEMPTS times in
        # all (Ray's default, forever, would loop on a clip that kills every worker); the working
        # tar is rewritten whole, so nothing is duplicated.
        "max_restarts": -1,
        "max_task_retries": SHARD_ATTEMPTS - 1,
    }


def _run_round(jobs: Sequence[ShardJob], stages: Sequence[tuple[Stage, int]], ledger, round_no: int,
               nodes: dict[str, dict[str, float]] | None) -> Iterator[ShardJob]:
    """One Ray Data execution of `jobs` through `stages`. `nodes`: size each pool to what these
    nodes hold (a retry round after a node was lost), or None to take the sizes as given."""
    import ray

    ds = ray.data.from_items([{"job": job.to_json()} for job in jobs], override_num_blocks=len(jobs))
    for index, (stage, workers) in enumerate(stages):
        if nodes is not None:
            workers = max(1, min(workers, _capacity(stage, nodes)))
        ds = ds.map_batches(_StageActor, fn_constructor_kwargs={"stage": stage, "ledger": ledger,
                                                                "stage_index": index, "round_no": round_no},
                            batch_size=1, batch_format="numpy", **stage_remote_args(stage, workers, len(jobs)))
    for row in ds.iter_rows():
        yield ShardJob.from_json(str(row["job"]))


def _worth_retrying(job: str, stages: int, records: dict, alive: set[str], aborted: set[int]) -> bool:
    """A shard that did not come back runs again unless an attempt raised (it would raise again) or
    its worker died SHARD_ATTEMPTS times in one stage on a node still alive, in a round that ran to
    its end (a clip that kills its worker). Attempts that never started do not count, nor those on
    a node since lost, nor those whose output was lost after they finished."""
    for stage in range(stages):
        attempts = records.get(f"{stage}/{job}", [])
        if any(a["state"] == "raised" for a in attempts):
            return False
        crashes = sum(a["state"] == "started" and a["node"] in alive and a["round"] not in aborted for a in attempts)
        if crashes >= SHARD_ATTEMPTS:
            return False
    return True


def _lost_a_node(err: Exception, before: set[str], wait_s: float = 30.0) -> bool:
    """Whether `err`, raised by a round, comes from a node that went away: an object lost (its
    node's store is gone), or an actor lost while Ray declares a node dead, which its health
    checks take seconds to do. Anything else (an actor that cannot start: a bug) is the caller's."""
    import time

    import ray.exceptions as errors

    if isinstance(err, (errors.ObjectLostError, errors.NodeDiedError)):
        return True
    deadline = time.monotonic() + wait_s
    while not before - set(_alive_nodes()):
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def run_stages(jobs: Sequence[ShardJob], stages: Sequence[tuple[Stage, int]]) -> Iterator[ShardJob]:
    """Push `jobs` through `stages`, each (stage, workers): a pool of `workers` actors (fewer when
    there are fewer jobs); yield jobs as they finish the last stage. A job whose worker died
    SHARD_ATTEMPTS times, or that raised, is not yielded: the caller reports the jobs that did not
    come back. Jobs whose work was lost with a node are run again on the nodes left (module doc)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not jobs:
        return
    here = ray.get_runtime_context().get_node_id()
    ledger = ray.remote(num_cpus=0, max_restarts=0)(_AttemptLedger).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
    remaining = {job.name: job for job in jobs}
    aborted: set[int] = set()
    try:
        for round_no in range(NODE_LOSS_ROUNDS + 1):
            before = _alive_nodes()
            try:
                for job in _run_round(list(remaining.values()), stages, ledger, round_no,
                                      None if round_no == 0 else before):
                    if remaining.pop(job.name, None) is not None:
                        yield job
            except ray.exceptions.RayError as err:
                if not _lost_a_node(err, set(before)):
                    raise
                aborted.add(round_no)
                print(f"a node was lost and with it the round's results ({type(err).__name__}); "
                      "carrying on with the nodes left", file=sys.stderr, flush=True)
            if not remaining:
                return
            alive = _alive_nodes()
            try:
                records = ray.get(ledger.records.remote())
            except ray.exceptions.RayError:  # the ledger is gone: no attempt counts, the rounds still end
                records = {}
            retry = [name for name in remaining if _worth_retrying(name, len(stages), records, set(alive), aborted)]
            if not retry or round_no == NODE_LOSS_ROUNDS:
                return
            lost = sorted(set(before) - set(alive))
            why = (f"{len(lost)} node(s) lost ({', '.join(n[:8] for n in lost)})" if lost
                   else "their workers could not be reached")
            print(f"{len(retry)} shard(s) did not finish because {why}: running them again on the "
                  f"{len(alive)} node(s) alive ({', '.join(sorted(retry))})", file=sys.stderr, flush=True)
            remaining = {name: remaining[name] for name in retry}
    finally:
        with contextlib.suppress(Exception):  # Ray may be shut down already
            ray.kill(ledger)
