"""Connecting to Ray, and asking it for the right kind of node.

A cluster from ``ray-cluster.yaml`` or ``cluster/`` labels its nodes with custom
resources: CPU workers carry ``cpu_node``, GPU workers carry ``gpu_node``.
CPU stages (extract, convert, evaluate) ask for a sliver of ``cpu_node`` so
they never land on (and hold) a GPU machine; training asks for ``gpu_node``
with ``--gpu``. On a plain local Ray these resources do not exist, so nothing
extra is asked for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from faceswap.errors import ServiceUnavailable
from faceswap.s3 import Secrets, stage_env

CPU_NODE = "cpu_node"
GPU_NODE = "gpu_node"
# A tiny amount: placement only, never a limit on how many tasks fit on a node.
_PLACEMENT_SHARE = 0.001


@dataclass(frozen=True)
class Cluster:
    """The Ray a command runs on, made where the command starts and passed to every stage.

    ``address``: ``--ray-address`` (ray://head:10001, auto, ...); None: the one a Ray job's driver
    is given in RAY_ADDRESS, else a new local Ray of our own. Nothing connects until a stage has
    checked its inputs and calls ``connect()``, so bad input fails in a second, not after Ray starts.
    """

    address: str | None = None

    def connect(self) -> "Cluster":
        """Connect (once per process)."""
        import ray

        if not ray.is_initialized():
            _init(self.address or os.environ.get("RAY_ADDRESS") or None)
        return self

    def workers(self, requested: int, cpus_per_worker: float) -> int:
        return default_workers(requested, cpus_per_worker)

    def run_shards(self, rows: list[dict], stage, *, workers: int, cpus: float, progress: bool,
                   args: tuple = (), kwargs: dict | None = None) -> list[dict]:
        """Ray Data: one shard per row through an actor pool of ``stage`` (a callable class), every
        output row back as plain Python values.

        All actors start at once (the shard count is known) and hold one shard each, so a shard never
        queues behind a busy actor while another idles; Ray Data restarts a lost actor and retries its
        shard, which is safe because every stage's output is idempotent. Each actor takes the driver's
        S3 secrets before ``stage`` is built (with_secrets).
        """
        import ray

        if not rows:
            return []
        pool = max(1, min(workers, len(rows)))
        ctx = ray.data.DataContext.get_current()
        bars = ctx.enable_progress_bars
        ctx.enable_progress_bars = progress
        try:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            ds = ds.map_batches(
                with_secrets(stage), batch_size=1,  # one shard per call: a shard is already seconds of work
                fn_constructor_args=args, fn_constructor_kwargs={**(kwargs or {}), "s3_secrets": Secrets.from_env()},
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool, initial_size=pool,
                                                   max_tasks_in_flight_per_actor=1),
                num_cpus=cpus, resources=cpu_stage_resources() or None, runtime_env=stage_env())
            return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in ds.iter_rows()]
        finally:
            ctx.enable_progress_bars = bars


def with_secrets(stage: type) -> type:
    """``stage`` (a callable class) whose constructor first applies the ``s3_secrets`` it is given, so the
    stage's own constructor already opens the store with them. Same name, so Ray Data's progress shows it."""

    def __init__(self, *args, s3_secrets: Secrets, **kwargs):
        s3_secrets.apply()
        stage.__init__(self, *args, **kwargs)

    # A local-class qualname: cloudpickle ships this class by value (a lookup by name would find ``stage``).
    return type(stage.__name__, (stage,), {"__init__": __init__, "__doc__": stage.__doc__,
                                           "__qualname__": f"with_secrets.<locals>.{stage.__name__}"})


def _init(address: str | None) -> None:
    import ray

    # Workers started by a local Ray inherit the driver's environment; on a remote
    # cluster the store's endpoint and credentials must travel with the job.
    runtime_env = stage_env()  # the secrets go to each stage's workers as an argument (faceswap.s3.Secrets)
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                     log_to_driver=True)
        else:
            # "local": a new Ray of our own, never whatever cluster /tmp/ray/ray_current_cluster names.
            # No dashboard on a laptop, so no State API: quiet the one Ray helper that polls it.
            runtime_env = {**(runtime_env or {}), "worker_process_setup_hook": "faceswap.raycluster.quiet_worker_logs"}
            quiet_driver_logs()
            ray.init(address="local", runtime_env=runtime_env, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=True)
    except ConnectionError as exc:
        raise ServiceUnavailable(f"Ray at {address}: cannot connect ({str(exc).splitlines()[0]})") from None
    # Ray Data's per-operator chatter off; its progress bars are set per run (Cluster.run_shards).
    ray.data.DataContext.get_current().print_on_execution_start = False
    # Every stage's pool is sized to its shards on purpose (run_shards): Ray Data's warning that such a
    # pool "will not allow it to scale up" is about its autoscaler, not the user's command.
    from ray.data.context import WARN_PREFIX

    _quiet("ray.data._internal.actor_autoscaler.default_actor_autoscaler", f"{WARN_PREFIX} Actor Pool configuration")


class _Drop(logging.Filter):
    """Drops the records of one logger whose message starts with ``prefix``; keeps everything else."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _quiet(logger: str, prefix: str) -> None:
    target = logging.getLogger(logger)
    if not any(isinstance(f, _Drop) and f.prefix == prefix for f in target.filters):
        target.addFilter(_Drop(prefix))


def _ray_file_logger(relative: str) -> str:
    """The name of a Ray logger made with getLogger(__file__) (named by its module's path)."""
    import ray

    return os.path.join(os.path.dirname(ray.__file__), relative)


def quiet_driver_logs() -> None:
    """On a local Ray of our own: Ray's notice that it turned on token authentication for the cluster
    it starts is about Ray's defaults, not the user's command, and it opens every command's output."""
    _quiet("ray._private.authentication.authentication_token_setup", "Token authentication is enabled")


def quiet_worker_logs() -> None:
    """Worker setup hook for a local Ray without a dashboard; only these lines are dropped.

    Ray Train's PlacementGroupCleaner asks the State API (served by the dashboard) every second whether
    the controller lives, and warns each time it cannot; its job (removing a dead controller's placement
    group) is moot on a local Ray, which ends with its driver. Ray Train also logs every report() of
    every checkpoint ("Reporting training result ... TrainingReport(...)", "Checkpoint successfully created
    at ...") and how it starts its worker group (the resources it asks for, the group, the process group):
    faceswap prints its own lines for checkpoints and the start, and a local Ray has the resources at once.
    """
    _quiet("ray.train.v2._internal.execution.controller.placement_group_cleaner",
           "Failed to query Ray Train Controller actor state")
    _quiet(_ray_file_logger("train/v2/_internal/execution/context.py"), "Reporting training result")
    _quiet("ray.train.v2._internal.execution.storage", "Checkpoint successfully created")
    group = "ray.train.v2._internal.execution.worker_group.worker_group"
    _quiet(group, "Started training worker group")
    _quiet(group, "Attempting to start training worker group")
    _quiet("ray.train.v2._internal.execution.scaling_policy.scaling_policy", "Requesting resources")
    _quiet("ray.train.torch.config", "Setting up process group for")


def _has(resource: str) -> bool:
    import ray

    return ray.is_initialized() and ray.cluster_resources().get(resource, 0) > 0


def cpu_stage_resources() -> dict[str, float]:
    """Custom resources for a CPU stage's tasks and actors (empty on a plain local Ray)."""
    return {CPU_NODE: _PLACEMENT_SHARE} if _has(CPU_NODE) else {}


def gpu_stage_resources() -> dict[str, float]:
    """Custom resources for a training worker with ``--gpu``."""
    return {GPU_NODE: _PLACEMENT_SHARE} if _has(GPU_NODE) else {}


def cluster_cpus() -> int:
    """CPUs in the cluster that a CPU stage may use (all of them on a local Ray)."""
    import ray

    resources = ray.cluster_resources()
    return max(1, int(resources.get("CPU", os.cpu_count() or 1)))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(requested: int, cpus_per_worker: float) -> int:
    """Actors for a CPU stage: ``requested``, or as many as the CPUs allow, leaving headroom.

    Ray Data needs a little CPU for its own read and write tasks; an actor pool
    that takes every CPU deadlocks on a 2-core machine.
    """
    if requested > 0:
        return requested
    return max(1, int((cluster_cpus() - 0.5) // cpus_per_worker))
