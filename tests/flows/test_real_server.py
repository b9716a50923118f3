"""README's operations sequence against a real Prefect server on PostgreSQL with basic auth.

One module-scoped server: PostgreSQL in a temp dir on a random port (skipped only where ``initdb`` is not
installed), ``prefect server start`` on another random port with PREFECT_SERVER_API_AUTH_STRING and a fresh
PREFECT_HOME, a process work pool, ``prefect deploy`` of data-refresh/daily (with its snapshot trigger) on a
small demo site, and a process worker. Every process is started in its own session and stopped by its PID.
Everything is checked through the Prefect API, never from console output.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.flows.conftest import SMALL_CRAWL, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTH = "cptflow:s3cret-for-tests"
POOL = "cptflow-process"
DEPLOYMENT = "data-refresh/daily"
# A smaller site than the other flow tests: no slow page, so the crawl ends in seconds.
SITE = {"seed": 3, "n_facts": 8, "korean_share": 0.25}


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGINT to the process group the PID leads (the server's uvicorn, the worker's flow runs), then
    SIGKILL what is left."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class Postgres:
    """A throwaway PostgreSQL cluster: initdb in a temp dir, its own port and socket dir, stopped by PID."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="cptflow-pg-"))
        self.port = free_port()
        # PostgreSQL refuses to run as root: as root (CI), run it as the `postgres` user.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, user=self.user, capture_output=True,
                       timeout=120)  # fmt: skip

    def start(self) -> str:
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.dir / "pg.log"), "-w", "start")
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", "create database prefect")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def stop(self) -> None:
        pid_file = self.dir / "data" / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)  # "fast" shutdown of the postmaster and its backends
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """`prefect server start` on PostgreSQL with basic auth; the CLI and the API client of a data engineer."""

    def __init__(self, work: Path, db_url: str):
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        common = {
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.server_env = {**base, **common, "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
                           "PREFECT_SERVER_API_AUTH_STRING": AUTH}  # fmt: skip
        self.client_env = {**base, **common, "PREFECT_API_URL": self.url, "PREFECT_API_AUTH_STRING": AUTH,
                           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}  # fmt: skip
        self.procs: list[subprocess.Popen] = []

    def background(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=self.client_env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def start(self) -> None:
        args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        proc = self.background("server", args, self.server_env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.log("server")
            try:
                if httpx.get(f"{self.url}/health", auth=tuple(AUTH.split(":")), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("the Prefect server did not become healthy in 120 s\n" + self.log("server"))

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)

    def settings(self):
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.url, PREFECT_API_AUTH_STRING: AUTH})


def _deployment_file(work: Path) -> Path:
    """The repository's data-refresh/daily deployment (schedule, trigger, pool) on a small demo site."""
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    daily = next(d for d in spec["deployments"] if d["entrypoint"].startswith("flows/data_refresh.py"))
    config = daily["parameters"]["config"]
    config["root"] = str(work / "data")
    config["ingest"]["sources"] = [
        {"kind": "demo", "site": {**SITE, "port": free_port()}, "crawl": SMALL_CRAWL},
    ]
    config["ingest"]["extract"] = {"timeout_s": 30.0}
    path = work / "prefect.yaml"
    path.write_text(yaml.safe_dump({**spec, "deployments": [daily]}, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def server():
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql/*/bin): "
                    "apt-get install postgresql")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="cptflow-server-"))
    pg = Postgres(pg_bin)
    srv = None
    try:
        srv = Server(work, pg.start())
        srv.start()
        created = srv.cli("work-pool", "create", POOL, "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        worker_args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--install-policy", "never"]
        srv.background("worker", worker_args, srv.client_env)  # starts while the deployment is made
        deployed = srv.cli("--no-prompt", "deploy", "--prefect-file", str(_deployment_file(work)), "--all")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield srv
    finally:
        if srv is not None:
            srv.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


async def _runs_of(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


async def _artifact_types(client, flow_run_id) -> set[str]:
    """Artifact types of a flow run and of its subflow runs (ingest and curate publish their progress)."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    children = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
    )
    ids = [flow_run_id, *[c.id for c in children]]
    artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    return {a.type for a in artifacts}


def test_unauthenticated_requests_are_refused(server):
    # /health stays open to liveness probes; everything else needs the credentials.
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    for method, path in (("POST", "/flows/filter"), ("GET", "/deployments/name/data-refresh/daily")):
        response = httpx.request(method, server.url + path, json={} if method == "POST" else None, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)
    wrong = httpx.post(server.url + "/flows/filter", json={}, auth=("cptflow", "wrong"), timeout=10)
    assert wrong.status_code == 401
    right = httpx.post(server.url + "/flows/filter", json={}, auth=tuple(AUTH.split(":")), timeout=10)
    assert right.status_code == 200 and "data-refresh" in {f["name"] for f in right.json()}


async def _deployment(server):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(DEPLOYMENT)


def test_deployment_run_completes_with_its_artifacts(server):
    import asyncio

    from prefect.client.orchestration import get_client

    watched = server.cli("deployment", "run", DEPLOYMENT, "--param", 'overrides=["run_id=cli-run"]', "--watch",
                         "--watch-interval", "1", "--watch-timeout", "300", timeout=330)  # fmt: skip

    async def check():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            runs = [r for r in await _runs_of(client, deployment.id) if r.name == "data-refresh-cli-run"]
            assert len(runs) == 1, [r.name for r in await _runs_of(client, deployment.id)]
            run = runs[0]
            assert run.state.is_completed(), (run.state, server.log("worker"))
            assert run.parameters["overrides"] == ["run_id=cli-run"]
            types = await _artifact_types(client, run.id)
            assert {"markdown", "table", "progress", "image"} <= types, types

    with server.settings():
        asyncio.run(check())
    assert watched.returncode == 0  # the watched run ended Completed (its state is asserted above)


def test_a_bad_parameter_is_rejected(server):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    async def check():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            before = len(await _runs_of(client, deployment.id))
            config = json.loads(json.dumps(deployment.parameters["config"]))
            config["train"]["lrr"] = 0.1  # a typo
            with pytest.raises(PrefectHTTPStatusError) as err:
                await client.create_flow_run_from_deployment(deployment.id, parameters={"config": config})
            assert err.value.response.status_code in (409, 422) and "lrr" in err.value.response.text
            assert len(await _runs_of(client, deployment.id)) == before

    with server.settings():
        asyncio.run(check())


def test_snapshot_event_triggers_a_data_refresh(server):
    import asyncio

    from prefect.client.orchestration import get_client

    snapshot = Path(tempfile.mkdtemp(prefix="cptflow-snapshot-", dir=server.work))
    (snapshot / "notes.md").write_text("# Release notes\n\n" + "The export format changed in January. " * 20)
    source = f"wiki-{uuid.uuid4().hex[:6]}"
    notify = subprocess.run([sys.executable, "-m", "flows.cli", "notify", "snapshot", str(snapshot), "--source",
                             source], cwd=ROOT, env=server.client_env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert notify.returncode == 0, notify.stderr

    async def triggered():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = [r for r in await _runs_of(client, deployment.id) if r.parameters.get("snapshot_source") == source]
                if runs and runs[0].state.is_final():
                    return runs[0]
                await asyncio.sleep(1)
            raise AssertionError(f"no finished data-refresh run for the snapshot event: {runs}\n" + server.log("worker"))

    with server.settings():
        run = asyncio.run(triggered())
    assert run.parameters["snapshot"] == str(snapshot.resolve())
    assert run.state.is_completed(), (run.state, server.log("worker"))
