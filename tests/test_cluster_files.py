"""Cluster deployment files: Ray's own validation of ray-cluster.yaml, the KubeRay
manifests' shape, and the jobs/ entry points matching the CLI.

    ray-cluster.yaml   -> prepare_config + validate_config (ray-schema.json), EC2 RunInstances model
    cluster/*.yaml     -> RayCluster / RayJob with cpu-workers (cpu_node) and gpu-workers (gpu_node)
    jobs/<cmd>.py      -> --help == `faceswap <cmd> --help`
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = {"extract": "extract", "train": "train", "convert": "convert", "evaluate": "evaluate", "run": "run"}


def _load(path: str) -> dict:
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def _docs(path: str) -> dict[str, dict]:
    with open(os.path.join(ROOT, path)) as f:
        return {d["kind"]: d for d in yaml.safe_load_all(f) if d}


# -- ray-cluster.yaml -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def launcher_config() -> dict:
    return _load("ray-cluster.yaml")


def test_launcher_config_passes_rays_validation(launcher_config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # What `ray up` does before touching AWS: fill the provider's defaults, merge the setup
    # commands, then check the result against ray-schema.json and the node-type rules.
    prepared = prepare_config(copy.deepcopy(launcher_config))
    validate_config(prepared)
    # The file itself (not only the merged result) must be schema-valid too.
    validate_config(launcher_config)


def test_launcher_validation_catches_a_broken_config(launcher_config):
    """The check above has teeth: a misspelled key fails it."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(launcher_config)
    broken["available_node_types"]["cpu-worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_launcher_node_types_and_custom_resources(launcher_config):
    cfg = launcher_config
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "stage work must not land on the head"
    cpu = types["cpu-worker"]
    gpu = types["gpu-worker"]
    assert cpu["resources"] == {"cpu_node": 16}
    assert gpu["resources"] == {"gpu_node": 1}
    for node_type in (cpu, gpu):
        assert node_type["min_workers"] == 0 < node_type["max_workers"]
    assert cpu["max_workers"] + gpu["max_workers"] <= cfg["max_workers"]
    assert cfg["idle_timeout_minutes"] > 0
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p")), "GPU workers need a GPU instance"
    assert "/home/ray/faceswap" in cfg["file_mounts"]
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"])


def _node_setup(cfg: dict, node_type: str, global_first: bool) -> list[str]:
    """The setup commands a node of ``node_type`` runs, as Ray 2.60's launcher composes them
    (``prepare_config`` merges the global ``setup_commands`` into the head's and the workers'
    lists; a node type's own ``worker_setup_commands`` replace the merged list). With
    ``global_first`` the global commands run first even then: the reading the docs allow."""
    from ray.autoscaler._private.util import prepare_config

    merged = prepare_config(copy.deepcopy(cfg))
    if node_type == cfg["head_node_type"]:
        return merged["head_setup_commands"]
    own = cfg["available_node_types"][node_type].get("worker_setup_commands")
    if own is None:
        return merged["worker_setup_commands"]
    return (cfg.get("setup_commands") or []) + own if global_first else own


def _torch_build(commands: list[str]) -> str | None:
    """The torch build a node ends with, as pip decides it: the first `pip install torch==V` installs
    (the CPU build from the CPU index, else PyPI's Linux wheel, a CUDA build); a later one of the same
    version is 'already satisfied' unless it forces a reinstall."""
    build = None
    for command in commands:
        words = command.split()
        if "pip" not in words or "install" not in words or not any(w.startswith("torch==") for w in words):
            continue
        if build is None or "--force-reinstall" in words:
            build = "cpu" if "download.pytorch.org/whl/cpu" in command else "cuda"
    return build


@pytest.mark.parametrize("global_first", [False, True], ids=["ray-2.60", "global-commands-first"])
def test_each_node_type_ends_with_the_torch_its_hardware_needs(launcher_config, global_first):
    cfg = launcher_config
    for name, node_type in cfg["available_node_types"].items():
        commands = _node_setup(cfg, name, global_first)
        wants = "cuda" if "gpu_node" in node_type.get("resources", {}) else "cpu"
        assert _torch_build(commands) == wants, f"{name}: {commands}"
        assert any("-e /home/ray/faceswap" in c for c in commands), f"{name} does not install the project"
    # The rule the check applies, on the configuration the GPU issue found: a CPU torch in the global
    # commands reaches the GPU node first wherever the global commands run there.
    broken = copy.deepcopy(cfg)
    broken["setup_commands"] = ["pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"]
    gpu_cmds = _node_setup(broken, "gpu-worker", global_first=True)
    assert _torch_build(gpu_cmds) == "cpu"


def test_launcher_node_configs_are_valid_ec2_requests(launcher_config):
    """node_config goes to EC2 RunInstances as-is: check it against botocore's API model."""
    import botocore.session
    from botocore.validate import validate_parameters

    shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    for name, node_type in launcher_config["available_node_types"].items():
        validate_parameters({**node_type["node_config"], "MinCount": 1, "MaxCount": 1}, shape)


def test_images_match_the_installed_ray(launcher_config):
    """Cluster and client must run the same Ray; every image tag names this version."""
    import ray

    tags = [launcher_config["docker"]["image"],
            launcher_config["available_node_types"]["gpu-worker"]["docker"]["worker_image"]]
    with open(os.path.join(ROOT, "cluster", "Dockerfile")) as f:
        tags += [line.split("=", 1)[1].strip() for line in f if line.startswith("ARG RAY_IMAGE=")]
    for kind in ("RayCluster", "RayJob"):
        doc = _docs(f"cluster/{kind.lower()}.yaml")[kind]
        spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
        assert spec["rayVersion"] == ray.__version__
    assert len(tags) == 3
    for tag in tags:
        assert tag.startswith(f"rayproject/ray:{ray.__version__}-py311"), tag


# -- KubeRay --------------------------------------------------------------------------------

def _start_resources(group: dict) -> dict:
    """rayStartParams' resources: a JSON object, quoted once more for the shell ('"{...}"')."""
    raw = group["rayStartParams"]["resources"]
    assert raw.startswith('"') and raw.endswith('"'), raw
    return json.loads(raw[1:-1].replace('\\"', '"'))


def _check_cluster_spec(spec: dict) -> None:
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    cpu, gpu = groups["cpu-workers"], groups["gpu-workers"]
    assert _start_resources(cpu) == {"cpu_node": 16}
    assert _start_resources(gpu) == {"gpu_node": 1}
    for g in (cpu, gpu):
        assert g["minReplicas"] == 0 < g["maxReplicas"]
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    gpu_container = gpu["template"]["spec"]["containers"][0]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu_container = cpu["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]
    # Ray takes a pod's CPU count from its limit; cpu_node counts those CPUs.
    assert int(cpu_container["resources"]["limits"]["cpu"]) == 16
    containers = [head["template"]["spec"]["containers"][0], cpu_container, gpu_container]
    for c in containers:
        env = {e["name"]: e for e in c["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "value" not in env[key], f"{key} must come from a Secret, never inline"
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "faceswap-s3"


def test_raycluster_manifest():
    docs = _docs("cluster/raycluster.yaml")
    assert set(docs) == {"RayCluster"}
    rc = docs["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1"
    _check_cluster_spec(rc["spec"])


def test_rayjob_manifest_runs_the_pipeline_on_the_same_cluster():
    docs = _docs("cluster/rayjob.yaml")
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert "jobs/run.py --config /etc/faceswap/pipeline.yaml" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(spec["rayClusterSpec"])
    # Same worker groups as the long-lived cluster; the head adds only the config mount.
    cluster = _docs("cluster/raycluster.yaml")["RayCluster"]["spec"]
    assert spec["rayClusterSpec"]["workerGroupSpecs"] == cluster["workerGroupSpecs"]
    head_mounts = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "pipeline-config", "mountPath": "/etc/faceswap", "readOnly": True} in head_mounts
    # The mounted config is a valid pipeline config.
    from faceswap.config import RunConfig, from_dict

    cfg = from_dict(RunConfig, yaml.safe_load(docs["ConfigMap"]["data"]["pipeline.yaml"]), "rayjob.yaml")
    assert all(uri.startswith("s3://") for uri in [*cfg.footage, *cfg.target, cfg.work, cfg.output])


def test_no_credentials_in_deployment_files():
    from conftest import S3_SECRET_KEY

    for path in ("ray-cluster.yaml", "cluster/raycluster.yaml", "cluster/rayjob.yaml", "cluster/Dockerfile",
                 "jobs/runtime_env.yaml"):
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        assert "AKIA" not in text and S3_SECRET_KEY not in text, path
    runtime_env = _load("jobs/runtime_env.yaml")
    assert runtime_env["working_dir"] == "." and "env_vars" not in runtime_env
    assert {".git", ".venv", "demo-out"} <= set(runtime_env["excludes"])


# -- jobs/ -----------------------------------------------------------------------------------

def _help(args: list[str]) -> str:
    # A fixed width: argparse wraps to $COLUMNS, which must not differ between the two runs.
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("script,command", sorted(JOBS.items()))
def test_job_help_equals_cli_help(script, command):
    assert _help([f"jobs/{script}.py"]) == _help(["-m", "faceswap.cli", command])


def test_job_passes_the_cli_exit_code(tmp_path):
    """A usage error in a job is the CLI's one line and exit 2, so the Ray job fails."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "run.py"), "--config",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"faceswap: error: {tmp_path / 'missing.yaml'}: no such config file"
