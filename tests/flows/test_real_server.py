"""README's operations sequence against a real Prefect server on PostgreSQL with basic auth.

One module-scoped server: PostgreSQL in a temp dir on a random port (skipped only where ``initdb`` is not
installed), ``prefect server start`` on another random port with PREFECT_SERVER_API_AUTH_STRING and a fresh
PREFECT_HOME, a process work pool, ``prefect deploy`` of data-refresh/daily (with its snapshot trigger) on a
small demo site, and a process worker. Every process is started in its own session and stopped by its PID.
A second deployment on a pool of its own serves the worker that is killed in the middle of a run.
Everything is checked through the Prefect API, never from console output.
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import json
import os
import re
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
# Flow-run heartbeats as often as Prefect allows (30 s), and the crash automation's silence window at three
# beats: a killed run is marked Crashed within about 95 s.
HEARTBEAT_S = 30
SILENCE_S = 3 * HEARTBEAT_S
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
        # The UI calls PREFECT_UI_API_URL, which `--port` does not change (it defaults to port 4200).
        self.server_env = {**base, **common, "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
                           "PREFECT_SERVER_API_AUTH_STRING": AUTH, "PREFECT_UI_API_URL": self.url}  # fmt: skip
        self.client_env = {**base, **common, "PREFECT_API_URL": self.url, "PREFECT_API_AUTH_STRING": AUTH,
                           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}  # fmt: skip
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
    from benchmarks.ui_screenshots import run_artifacts

    return {a.type for a in await run_artifacts(client, flow_run_id)}


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


# --- What a person sees in the UI -------------------------------------------------------------------------


def _assert_screenshot(path: Path) -> None:
    """A real page: a PNG of the window's size with more than a blank background."""
    from PIL import Image

    from benchmarks.ui_screenshots import WINDOW

    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == WINDOW, (image.format, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20, f"{path.name}: {len(colours)} colours, a blank page"


def test_the_ui_shows_the_run_by_its_run_id_and_its_report_without_broken_images(server, tmp_path):
    from prefect.client.orchestration import get_client

    from benchmarks.ui_screenshots import Chromium, find_chromium, run_artifacts

    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the UI is not looked at")

    async def finished():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            created = await client.create_flow_run_from_deployment(deployment.id,
                                                                   parameters={"overrides": ["run_id=ui-run"]})  # fmt: skip
            run = await _wait_final(client, created.id)
            return created.name, run, await run_artifacts(client, run.id)

    with server.settings():
        random_name, run, artifacts = asyncio.run(finished())
    assert run.state.is_completed(), (run.state, server.log("worker"))
    assert run.name == "data-refresh-ui-run" != random_name  # the server's name until the flow renamed it
    report = next(a for a in artifacts if a.key == "ui-run-run-report")
    progress = [a for a in artifacts if a.type == "progress"]
    assert progress and all(a.data == 100 for a in progress), [(a.key, a.data) for a in progress]

    base = server.url.removesuffix("/api")
    with Chromium(binary, auth=AUTH) as browser:
        # The page with its logs. The server's random name is the run's name until the flow starts and renames
        # it, so the worker's first log lines carry it; the page's heading (above the Logs tab) must not.
        assert browser.open(f"{base}/runs/flow-run/{run.id}", ready="document.body.innerText.includes("
                            "'data-refresh-ui-run') && document.body.innerText.includes('Finished in')"), \
            browser.text()[:2000]  # fmt: skip
        browser.screenshot(tmp_path / "flow_run.png")
        assert "data-refresh-ui-run" in browser.dom() and "Completed" in browser.text()
        heading = browser.text().split("\nLogs\n")[0]
        assert "data-refresh-ui-run" in heading and random_name not in heading, heading
        assert browser.open(f"{base}/runs", ready="document.body.innerText.includes('data-refresh-ui-run')")
        assert random_name not in browser.dom()
        assert browser.open(f"{base}/artifacts/artifact/{report.id}",
                            ready="document.body.innerText.includes('Plots') && document.images.length > 0"), browser.text()[:2000]
        browser.screenshot(tmp_path / "report.png")
        assert browser.broken_images() == []
        assert browser.evaluate("Array.from(document.images).filter(i => i.naturalWidth > 0).length") >= 1
    for name in ("flow_run.png", "report.png"):
        _assert_screenshot(tmp_path / name)


# --- A worker killed in the middle of a run ---------------------------------------------------------------

FAULTS_POOL = "cptflow-faults"
FAULTS_DEPLOYMENT = "data-refresh/faults"
_FETCHED_AT = re.compile(r'"fetched_at":\s*"[^"]*"')


def _faults_deployment(work: Path) -> Path:
    """data-refresh/daily as ``data-refresh/faults`` on a pool of its own, with no schedule or trigger: only
    this test's workers run it."""
    spec = yaml.safe_load(_deployment_file(work).read_text())
    daily = spec["deployments"][0]
    faults = {**daily, "name": "faults", "schedules": [], "triggers": [],
              "work_pool": {**daily["work_pool"], "name": FAULTS_POOL}}  # fmt: skip
    path = work / "prefect-faults.yaml"
    path.write_text(yaml.safe_dump({**spec, "deployments": [faults]}, sort_keys=False, allow_unicode=True))
    return path


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the flow-run processes a worker started), read from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL the worker's process group and the group of every process below it (a flow run may run in a
    session of its own), as a lost node would; returns once every one of them is gone."""
    pids = [worker.pid, *_descendants(worker.pid)]
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    for pgid in groups - {os.getpgrp()}:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "a process of the killed worker survived"


def _mid_crawl(run_dir: Path, pages: int = 5) -> bool:
    """Whether the run is in the middle of its crawl: ``pages`` URLs logged in its ``.partial`` output, no
    crawl output committed yet."""
    log = run_dir / "ingest" / "crawl.partial" / "fetch_log.jsonl"
    try:
        return len(log.read_bytes().splitlines()) >= pages and not (run_dir / "ingest" / "crawl").exists()
    except OSError:
        return False


def _create_crash_automation(server) -> None:
    """deployments/automations.yaml as `prefect automation create` makes it, with this test's silence window."""
    spec = yaml.safe_load((ROOT / "deployments" / "automations.yaml").read_text())
    for automation in spec["automations"]:
        window = automation["trigger"]["within"]
        automation["trigger"]["within"] = SILENCE_S
        for action in automation["actions"]:
            action["message"] = action["message"].replace(f"{window} s", f"{SILENCE_S} s")
    path = server.work / "automations.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    created = server.cli("automation", "create", "--from-file", str(path))
    assert created.returncode == 0, created.stdout + created.stderr


async def _wait_crashed(client, flow_run_id, timeout: float = SILENCE_S + 120):
    """The run, once the heartbeat automation has marked it Crashed (nobody else sets its state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await client.read_flow_run(flow_run_id)
        if not run.state.is_running():
            return run
        await asyncio.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} still {run.state.name} {timeout} s after its worker was killed")


async def _wait_final(client, flow_run_id, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await client.read_flow_run(flow_run_id)
        if run.state.is_final():
            return run
        await asyncio.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s: {run.state}")


def _stage_outputs(root: Path, run_dir: Path) -> dict[str, list[str]]:
    """The documents every stage after the crawl kept or dropped, line by line, by path in the run.

    Two runs differ only in when a page was fetched (``metadata.fetched_at``, the WARC record's date), which
    is blanked, and in their root folder (in ``metadata.file_path``), which reads ``<root>``: every other byte
    of every line must match.
    """
    files = sorted(run_dir.glob("ingest/extract/**/*.jsonl.gz")) + sorted(run_dir.glob("curate/*/*/*.jsonl.gz"))
    outputs = {}
    for path in files:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        outputs[path.relative_to(run_dir).as_posix()] = [
            _FETCHED_AT.sub('"fetched_at":""', line).replace(str(root.resolve()), "<root>") for line in lines
        ]
    return outputs


def _fetch_log(run_dir: Path) -> list[tuple[str, str]]:
    """The crawl's log: each URL with why it was kept or not, in URL order."""
    rows = [json.loads(line) for line in (run_dir / "ingest" / "crawl" / "fetch_log.jsonl").read_text().splitlines()]
    return sorted((row["url"], row["reason"]) for row in rows)


def _manifest_facts(run_dir: Path) -> dict[str, tuple]:
    """What each stage's manifest says it did (key, counts, drop reasons), leaving out timings."""
    facts = {}
    for path in sorted(run_dir.glob("**/_manifest.json")):
        manifest = json.loads(path.read_text())
        summary = {k: v for k, v in manifest.get("summary", {}).items() if k in ("docs_in", "docs_out", "dropped")}
        facts[path.parent.relative_to(run_dir).as_posix()] = (manifest.get("key"), summary)
    return facts


def test_a_worker_killed_mid_run_reruns_to_the_output_of_an_uninterrupted_run(server):
    from prefect.client.orchestration import get_client

    _create_crash_automation(server)
    created = server.cli("work-pool", "create", FAULTS_POOL, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = server.cli("--no-prompt", "deploy", "--prefect-file", str(_faults_deployment(server.work)), "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    worker_args = [str(BIN / "prefect"), "worker", "start", "--pool", FAULTS_POOL, "--install-policy", "never"]
    reference, killed = server.work / "uninterrupted", server.work / "killed"
    run_id = "killed-mid-run"

    def params(root: Path) -> dict:
        # A generous page timeout: on a loaded machine a page that times out in one run only is no resume bug.
        return {"overrides": [f"root={root}", f"run_id={run_id}", "ingest.sources.0.crawl.timeout_s=30"]}

    async def scenario():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(FAULTS_DEPLOYMENT)
            first = server.background("faults-worker-1", worker_args, server.client_env)
            ref = await client.create_flow_run_from_deployment(deployment.id, parameters=params(reference))
            ref = await _wait_final(client, ref.id)
            assert ref.state.is_completed(), (ref.state, server.log("faults-worker-1"))

            doomed = await client.create_flow_run_from_deployment(deployment.id, parameters=params(killed))
            run_dir, deadline = killed / "runs" / run_id, time.monotonic() + 300
            while not _mid_crawl(run_dir) and time.monotonic() < deadline:
                assert first.poll() is None, server.log("faults-worker-1")
                await asyncio.sleep(0.02)
            assert _mid_crawl(run_dir), "never caught the run mid-crawl\n" + server.log("faults-worker-1")
            _kill_worker(first)
            assert not (run_dir / "ingest" / "crawl").exists(), "killed after the crawl had committed"
            assert (await client.read_flow_run(doomed.id)).state.is_running()  # nobody is left to report it
            # The heartbeats stopped with the worker: the repository's automation marks the run Crashed.
            lost = await _wait_crashed(client, doomed.id)
            assert lost.state.is_crashed() and "No heartbeat" in (lost.state.message or ""), lost.state

            server.background("faults-worker-2", worker_args, server.client_env)
            again = await client.create_flow_run_from_deployment(deployment.id, parameters=params(killed))
            again = await _wait_final(client, again.id)
            assert again.state.is_completed(), (again.state, server.log("faults-worker-2"))

    with server.settings():
        asyncio.run(scenario())
    got, want = killed / "runs" / run_id, reference / "runs" / run_id
    assert not list(got.glob("**/*.partial")), "a .partial folder left over after the rerun"
    assert _fetch_log(got) == _fetch_log(want), "every URL crawled once, with the same outcome"
    assert _manifest_facts(got) == _manifest_facts(want)
    outputs, expected = _stage_outputs(killed, got), _stage_outputs(reference, want)
    assert sorted(outputs) == sorted(expected)
    for name, data in expected.items():
        assert outputs[name] == data, f"{name} differs from the uninterrupted run's"
    curated = [json.loads(line)["id"] for name, lines in outputs.items()
               if name.startswith("curate/decontaminate/documents") for line in lines]  # fmt: skip
    assert curated and len(curated) == len(set(curated)), "no curated document missing or duplicated"
