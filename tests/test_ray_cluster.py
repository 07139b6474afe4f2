"""A real Ray cluster of two nodes on this machine, with token authentication: `make preprocess`'s
entry point runs on it with RAY_ADDRESS, the second node is killed while it holds a shard, and
the same run finishes on the node left: exit 0, every manifest row once, `verify` OK.

The cluster is the test's own: its own temp folders, ports and token, its processes found by
session id (each node is started in a session of its own), and all of them killed at the end
whatever happens. No other Ray instance on the machine is touched (no `ray stop`, which stops
every Ray process of the user)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.inputs.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file() or not RAY.is_file(),
                                reason="needs Linux /proc and the ray command line")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def session_processes(sid: int) -> list[int]:
    """Every live process of session `sid` (a node's `ray start` and all it started, orphans included;
    not zombies, which are dead and wait for their parent to collect them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def title(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


class LocalCluster:
    """Ray nodes started with `ray start --block`, each in a session of its own."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        # Token authentication, as on a real cluster: every node and the driver get the same token.
        # Through RAY_AUTH_TOKEN, so that ~/.ray/auth_token is neither read nor written.
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        self.nodes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, head: bool, cpus: int = 1) -> subprocess.Popen:
        ports = free_ports(7)
        command = [str(RAY), "start", "--block", "--temp-dir", str(self.base / name), "--node-ip-address", "127.0.0.1",
                   "--num-cpus", str(cpus), "--num-gpus", "0", "--object-store-memory", str(100 * 2**20),
                   "--disable-usage-stats", "--node-manager-port", str(ports[0]),
                   "--object-manager-port", str(ports[1]), "--dashboard-agent-listen-port", str(ports[2]),
                   "--dashboard-agent-grpc-port", str(ports[3]), "--runtime-env-agent-port", str(ports[4]),
                   "--metrics-export-port", str(ports[5])]
        if head:
            command += ["--head", "--port", str(self.port), "--include-dashboard", "false",
                        "--ray-client-server-port", str(ports[6])]
        else:
            command += ["--address", self.address]
        with open(self.base / f"{name}.log", "w") as log:
            node = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.nodes[name] = node
        return node

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def wait_started(self, name: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while "Ray runtime started" not in self.log(name):
            assert self.nodes[name].poll() is None, f"ray start ({name}) ended:\n{self.log(name)[-3000:]}"
            assert time.time() < deadline, f"ray start ({name}) not up in {timeout} s:\n{self.log(name)[-3000:]}"
            time.sleep(0.2)

    def wait_listening(self, timeout: float = 120) -> None:
        """Until the head's GCS takes connections (a second node can be started then)."""
        deadline = time.time() + timeout
        while True:
            assert self.nodes["head"].poll() is None, f"ray start (head) ended:\n{self.log('head')[-3000:]}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.time() < deadline, f"the head's GCS not up in {timeout} s"
            time.sleep(0.2)

    def processes(self, name: str) -> list[int]:
        return session_processes(self.nodes[name].pid)

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node, as when a machine goes away."""
        deadline = time.time() + 30
        while (pids := self.processes(name)) and time.time() < deadline:  # some may be starting as we kill
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        try:
            self.nodes[name].wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        for name in list(self.nodes)[::-1]:
            self.kill(name)


@pytest.fixture
def cluster():
    # Short: Ray's socket paths under the temp folder must stay within the 107 bytes of a Unix socket.
    base = Path(tempfile.mkdtemp(prefix="dfer-ray-", dir="/tmp"))
    made = LocalCluster(base)
    try:
        yield made
    finally:
        made.stop()
        left = [pid for name in made.nodes for pid in made.processes(name)]
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], f"processes of the test's cluster still alive: {left}"


def busy_stage_actors(cluster: LocalCluster, name: str) -> list[int]:
    """Actor processes of node `name` that are running a shard now."""
    return [pid for pid in cluster.processes(name)
            if "_StageActor" in (t := title(pid)) and ".submit" in t]


def test_a_run_on_a_two_node_cluster_finishes_when_a_node_is_lost(cluster, sample_data, tmp_path):
    started = time.time()
    cluster.start("head", head=True)
    cluster.wait_listening()
    cluster.start("worker", head=False)
    cluster.wait_started("head")
    out = tmp_path / "out"
    env = dict(cluster.env, RAY_ADDRESS=cluster.address)
    # Two actors, one per node (each has one CPU); 2 clips per shard: 9 shards to share.
    run = subprocess.Popen([sys.executable, "-m", "pipeline.preprocess", "sample", "--data-root", str(sample_data),
                            "--out", str(out), "--shard-size", "2", "--workers", "2", "--no-progress"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed, deadline = None, time.time() + 240
        while killed is None and run.poll() is None and time.time() < deadline:
            busy = busy_stage_actors(cluster, "worker")
            if busy:  # the second node holds a shard: the node goes
                killed = time.time() - started
                cluster.kill("worker")
            time.sleep(0.1)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert killed is not None, f"the second node never ran a shard:\n{cluster.log('worker')[-2000:]}\n{output[-3000:]}"
    assert run.returncode == 0, output[-5000:]
    assert "running them again" in output, output[-3000:]

    manifest = load_manifest("sample", sample_data)
    rows = [json.loads(line) for path in sorted(out.glob("*.status.jsonl")) for line in path.read_text().splitlines()]
    assert Counter(r["clip_id"] for r in rows) == Counter(r.clip_id for r in manifest.rows)
    assert all(r["status"] == "ok" or (r["status"] == "failed" and r["reason"]) for r in rows), rows
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and index["crashed_shards"] == [] and index["missing_shards"] == []
    verify = subprocess.run([sys.executable, "-m", "pipeline.verify", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0 and "verify: OK" in verify.stdout, verify.stdout[-3000:] + verify.stderr[-2000:]
    print(f"worker node killed {killed:.1f} s in; whole test {time.time() - started:.1f} s")


# --- GPU shares: from the command line to what Ray is asked for (no GPU needed) ------------------
def planned_stages(monkeypatch, sample_data, out: Path, *flags: str) -> list:
    """The (stage, actors) pools `make preprocess PROFILE=full` would run on a machine with one GPU and
    4 CPUs, with light backends (nothing is loaded and nothing runs)."""
    import pipeline.preprocess as pre

    planned = []
    monkeypatch.setattr(pre, "check_resources", lambda *args, **kwargs: ({"CPU": 4.0, "GPU": 1.0}, 1.0))
    monkeypatch.setattr(pre, "model_identities", lambda *args, **kwargs: {})
    monkeypatch.setattr(pre, "run_jobs", lambda folder, todo, stages, progress: planned.extend(stages) or [])
    pre.main(["sample", "--data-root", str(sample_data), "--out", str(out), "--profile", "full", "--detector", "dlib",
              "--landmarker", "dlib", "--parser", "landmarks", "--describer", "videollava", "--no-progress", *flags])
    return planned


def test_gpu_shares_set_on_the_command_line_are_what_each_stage_asks_for(monkeypatch, sample_data, tmp_path):
    from pipeline.run.ray_runner import stage_remote_args

    (face, face_actors), (describe, describe_actors) = planned_stages(monkeypatch, sample_data, tmp_path / "a")
    assert (face.name, face.num_gpus, face_actors) == ("face", 0.5, 2)            # the defaults: two per GPU,
    assert (describe.name, describe.num_gpus, describe_actors) == ("describe", 1.0, 1)  # then Video-LLaVA

    (face, face_actors), (describe, describe_actors) = planned_stages(
        monkeypatch, sample_data, tmp_path / "b", "--face-gpus", "0.25", "--describe-gpus", "0.5")
    assert (face.num_gpus, face_actors, describe.num_gpus, describe_actors) == (0.25, 2, 0.5, 1)  # one card, together
    asked = stage_remote_args(face, face_actors, jobs=10)
    assert (asked["num_gpus"], asked["num_cpus"], asked["compute"].min_size) == (0.25, 1.0, 2)
    assert stage_remote_args(describe, describe_actors, jobs=10)["num_gpus"] == 0.5

    (face, face_actors), (describe, describe_actors) = planned_stages(
        monkeypatch, sample_data, tmp_path / "c", "--face-gpus", "0.25", "--workers", "3", "--describe-workers", "2")
    assert (face.num_gpus, face_actors, describe.num_gpus, describe_actors) == (0.25, 3, 1.0, 2)

    with pytest.raises(SystemExit):
        planned_stages(monkeypatch, sample_data, tmp_path / "d", "--face-gpus", "1.5")  # Ray takes 0.5 or 2, not 1.5


def test_fractional_gpus_are_granted_by_ray_to_stages_sharing_one_gpu():
    """On a Ray instance told it has one GPU (Ray schedules GPUs as numbers; none is used): a face pool
    of two actors at 0.25 and a describer at 0.5, which fit on that one GPU together, are each granted
    exactly their share."""
    import ray

    from pipeline.run.ray_runner import init_ray, run_stages, shutdown_ray
    from pipeline.run.stages import ShardJob, Stage

    class Granted(Stage):  # defined here so that Ray ships it by value (tests/ is no package)
        def __init__(self, name: str, gpus: float):
            self.name, self.num_gpus = name, gpus

        def process(self, job: ShardJob) -> ShardJob:
            job.status[self.name] = ray.get_runtime_context().get_assigned_resources()
            return job

    jobs = [ShardJob(name=f"s{i}", partition="fold1", rows=[]) for i in range(4)]
    init_ray(num_cpus=3, num_gpus=1)
    try:
        done = list(run_stages(jobs, [(Granted("face", 0.25), 2), (Granted("describe", 0.5), 1)]))
    finally:
        shutdown_ray()
    assert sorted(job.name for job in done) == ["s0", "s1", "s2", "s3"]
    for job in done:
        assert job.status["face"]["GPU"] == pytest.approx(0.25) and job.status["face"]["CPU"] == 1
        assert job.status["describe"]["GPU"] == pytest.approx(0.5)
