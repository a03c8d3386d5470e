"""Ray Jobs and cluster placement (issue acceptance).

    ray start --head (real processes, own temp dir and ports) -> JobSubmissionClient.submit_job(
        "python jobs/extract.py ..." / "python jobs/run.py --config ...", working_dir = this repo)
        -> SUCCEEDED -> the face set / the swapped film are in the store
    ray.cluster_utils.Cluster: head + cpu_node node + gpu_node node
        -> CPU stage wiring lands on the cpu_node node, training resources on the gpu_node node

The head is stopped through its own processes, never with `ray stop`: that command kills
every Ray on the machine, including other users' and other test sessions'.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from conftest import _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- a real `ray start --head` -----------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, start time) for every process, from /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the command (which may hold spaces) start after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (int(fields[1]), int(fields[3]), fields[19])
    return table


def _family(root_pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of ``root_pid``, its descendants and its session (Ray moves workers
    to their own process groups and job drivers to their own sessions, but not out of the tree)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    found |= {pid for pid, (_, sid, _) in table.items() if sid == root_pid}
    return {(pid, table[pid][2]) for pid in found if pid in table}


def _alive(members: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = _proc_table()
    return {(pid, start) for pid, start in members if pid in table and table[pid][2] == start}


class RayHead:
    """`ray start --head --block` in its own session, on free ports and its own temp dir."""

    def __init__(self, num_cpus: int = 2):
        # Short: Ray's unix sockets live under the temp dir and paths are capped at 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
        self.dashboard_port = _free_port()
        ports = {"--port": _free_port(), "--dashboard-port": self.dashboard_port,
                 # Fixed defaults (10001, 52365) would collide with any other Ray on this machine.
                 "--ray-client-server-port": _free_port(), "--dashboard-agent-listen-port": _free_port(),
                 "--dashboard-agent-grpc-port": _free_port(), "--runtime-env-agent-port": _free_port(),
                 "--metrics-export-port": _free_port(), "--node-manager-port": _free_port(),
                 "--object-manager-port": _free_port()}
        self.cmd = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
                    "--num-cpus", str(num_cpus), "--include-dashboard", "true",
                    "--dashboard-host", "127.0.0.1", "--temp-dir", self.temp_dir, "--disable-usage-stats",
                    *[str(x) for kv in ports.items() for x in kv]]
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        # This Ray requires a token when one is around (e.g. ~/.ray/auth_token from another session):
        # use a token of our own, given to the head (and so to job drivers) and to the client.
        self.token = secrets.token_hex(32)
        self.proc: subprocess.Popen | None = None
        self.members: set[tuple[int, str]] = set()

    def start(self, timeout_s: float = 180) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        # `python` in a job's entrypoint must be this interpreter, which has faceswap's dependencies.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        self.log = open(os.path.join(self.temp_dir, "ray-start.log"), "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.temp_dir,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.client().list_jobs()
                break
            except Exception as exc:  # noqa: BLE001 - polling until the dashboard answers
                last = exc
                time.sleep(1)
        else:
            raise RuntimeError(f"the Ray head did not answer on {self.address} in {timeout_s}s ({last}):\n"
                               f"{self.log_tail()}")
        # The dashboard answers before its job agent has registered (or when the agent failed to start, e.g. on a
        # port taken meanwhile): submissions then fail with "No available agent". Ready means a job runs.
        while time.monotonic() < deadline:
            try:
                client = self.client()
                job_id = client.submit_job(entrypoint="true")
                while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
                    time.sleep(0.5)
                if client.get_job_status(job_id).is_terminal():
                    return
            except RuntimeError as exc:
                if "No available agent" not in str(exc):
                    raise
                last = exc
                time.sleep(1)
        raise RuntimeError(f"the Ray head on {self.address} ran no job in {timeout_s}s ({last}):\n{self.log_tail()}")

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address, headers={"Authorization": f"Bearer {self.token}"})

    def log_tail(self, chars: int = 3000) -> str:
        with open(os.path.join(self.temp_dir, "ray-start.log"), "rb") as f:
            return f.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to `ray start --block` (it shuts its node down), then kill any straggler of ours."""
        if self.proc is None:
            return
        self.members |= _family(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 30
        while _alive(self.members) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid, _ in _alive(self.members):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self.log.close()
        self.proc = None


@pytest.fixture(scope="module")
def ray_head():
    # Free ports are picked before `ray start`; Ray may take one of them for itself meanwhile: retry.
    for attempt in range(3):
        head = RayHead(num_cpus=2)
        try:
            head.start()
            break
        except RuntimeError:
            head.stop()
            shutil.rmtree(head.temp_dir, ignore_errors=True)
            if attempt == 2:
                raise
    try:
        yield head
    finally:
        head.stop()
        leftovers = _alive(head.members)
        shutil.rmtree(head.temp_dir, ignore_errors=True)
        assert not leftovers, f"Ray processes left behind: {sorted(leftovers)}"


def _runtime_env() -> dict:
    """jobs/runtime_env.yaml (what users submit with), with the working dir made absolute."""
    with open(os.path.join(ROOT, "jobs", "runtime_env.yaml")) as f:
        env = yaml.safe_load(f)
    env["working_dir"] = ROOT
    env["excludes"] = [*env["excludes"], ".pytest_cache", "benchmarks/out"]
    return env


def _run_job(head: RayHead, entrypoint: str, timeout_s: float) -> str:
    """Submit, wait for a final status, return the logs; fail with the logs unless SUCCEEDED."""
    from ray.job_submission import JobStatus

    client = head.client()
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=_runtime_env())
    deadline = time.monotonic() + timeout_s
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if not status.is_terminal():
        client.stop_job(job_id)
    assert status == JobStatus.SUCCEEDED, (f"job {job_id} ({entrypoint}) ended {status}: "
                                           f"{client.get_job_info(job_id).message}\n{logs[-4000:]}")
    return logs


@pytest.mark.timeout(900)
def test_stage_job_extracts_into_the_store(ray_head, samples_dir, tmp_path):
    out = tmp_path / "faces_a"
    clip = os.path.join(samples_dir, "a_small.mp4")
    _run_job(ray_head, f"python jobs/extract.py {clip} --out {out} --workers 1", timeout_s=600)
    from faceswap.storage import Store

    store = Store(str(out))
    manifest = store.read_json("manifest.json")
    assert manifest["kind"] == "faceset"
    assert manifest["counts"]["faces"] > 0
    assert len(store.list("alignments", ".parquet")) == manifest["counts"]["shards"]
    assert store.list("faces", ".jpg")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_pipeline_job_writes_the_swapped_film(ray_head, samples_dir, tmp_path):
    s = lambda name: os.path.join(samples_dir, name)  # noqa: E731
    out = tmp_path / "out" / "swapped.mp4"
    config = {
        "footage": [s("a_bystander_small.mp4")],
        "target": [s("b_small.mp4"), s("refs/b.png")],
        "identity": [s("refs/a.png")],
        "target_identity": [s("refs/b.png")],
        "work": str(tmp_path / "store"),
        "output": str(out),
        "evaluate": True,
        # Tiny: this checks the job plumbing end to end, not the swap's quality.
        "train": {"preset": "lite", "steps": 30, "preview_every": 10, "checkpoint_every": 30},
        "convert": {"label": "AI-GENERATED"},
    }
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    _run_job(ray_head, f"python jobs/run.py --config {cfg_path}", timeout_s=1500)

    from faceswap.storage import Store
    from faceswap.video.probe import probe

    store = Store(config["work"])
    assert store.exists("faces/a/manifest.json") and store.exists("faces/b/manifest.json")
    assert store.exists("model/model/model.pt")
    info = probe(str(out))
    assert info.frames == probe(s("a_bystander_small.mp4")).frames
    assert os.path.exists(tmp_path / "out" / "swapped.report.json")


# -- placement on a multi-node cluster ------------------------------------------------------------

@pytest.fixture
def three_node_cluster():
    """Head, one CPU worker (cpu_node) and one "GPU" worker (gpu_node, a logical GPU): like
    ray-cluster.yaml and cluster/raycluster.yaml, one logical CPU each on a 2-core machine."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cpu = cluster.add_node(num_cpus=1, resources={"cpu_node": 4})
        gpu = cluster.add_node(num_cpus=1, num_gpus=1, resources={"gpu_node": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield {"cpu": cpu.node_id, "gpu": gpu.node_id, "head": cluster.head_node.node_id}
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(600)
def test_stages_are_placed_on_their_node_kinds(three_node_cluster):
    import ray

    from faceswap.raycluster import cpu_stage_resources, gpu_stage_resources
    from faceswap.stages.extract import ACTOR_CPUS

    nodes = three_node_cluster
    assert cpu_stage_resources() == {"cpu_node": pytest.approx(0.001)}
    assert gpu_stage_resources() == {"gpu_node": pytest.approx(0.001)}

    class WhereAmI:
        """Stands in for a stage actor: same pool, CPU share and resources as extract's wiring."""

        def __call__(self, batch):
            batch["node"] = [ray.get_runtime_context().get_node_id()] * len(batch["i"])
            return batch

    ds = ray.data.from_items([{"i": i} for i in range(8)], override_num_blocks=4).map_batches(
        WhereAmI, batch_size=2, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
        num_cpus=ACTOR_CPUS, resources=cpu_stage_resources())
    assert {row["node"] for row in ds.take_all()} == {nodes["cpu"]}

    @ray.remote
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    # Training with --gpu asks for a GPU and gpu_node (faceswap.stages.train's resources_per_worker).
    assert ray.get(where.options(num_cpus=1, num_gpus=1, resources=gpu_stage_resources()).remote()) == nodes["gpu"]
    # Training on CPU, and every other CPU stage task, asks for cpu_node.
    assert ray.get(where.options(num_cpus=1, resources=cpu_stage_resources()).remote()) == nodes["cpu"]


@pytest.mark.timeout(900)
def test_real_stages_run_on_cpu_nodes(three_node_cluster, samples_dir, tmp_path):
    """The stages themselves (not stand-ins) on the 3-node cluster: every shard and the training
    worker ran on the cpu_node node; nothing landed on the head or the "GPU" node."""
    from faceswap.config import ConvertConfig, ExtractConfig, TrainConfig
    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train

    cpu = [three_node_cluster["cpu"]]
    s = lambda name: os.path.join(samples_dir, name)  # noqa: E731
    faces_a, faces_b, model = (str(tmp_path / n) for n in ("faces_a", "faces_b", "model"))
    assert run_extract(ExtractConfig(inputs=[s("a_small.mp4")], out=faces_a), progress=False)["nodes"] == cpu
    assert run_extract(ExtractConfig(inputs=[s("refs/b.png")], out=faces_b), progress=False)["nodes"] == cpu
    trained = run_train(TrainConfig(a=faces_a, b=faces_b, out=model, steps=2, batch_size=2, checkpoint_every=2,
                                    preview_every=2), progress=False)
    assert trained["nodes"] == cpu
    converted = run_convert(ConvertConfig(video=s("a_small.mp4"), faces=faces_a, model=model,
                                          out=str(tmp_path / "out.mp4")), progress=False)
    assert converted["nodes"] == cpu
