"""What a person sees in the Prefect UI after a data refresh, in a real browser (headless Chromium).

Runs ``data-refresh`` through its deployment to completion on a Prefect server, then opens four UI pages in
headless Chromium and saves a screenshot of each, checking what a person would notice:

    runs list     /runs                          the run is named ``data-refresh-<run id>``, not the random
                                                 name ("imaginary-barracuda") the server gave it at creation
    flow run      /runs/flow-run/<id>            the same name in its heading, state Completed, its logs
    report        /artifacts/artifact/<id>       the run report renders, no broken image
    progress      /artifacts/artifact/<id>       every progress artifact of the run (and its subflows) at 100 %

The browser is driven over the Chrome DevTools protocol (``--remote-debugging-port``, with the ``websockets``
client Prefect already installs): with basic auth on the server, the UI keeps the auth string base64-encoded
in ``localStorage["prefect-password"]`` (what its login page stores), so it is set before each page loads;
a plain ``chromium --screenshot`` would show the login page.

    python benchmarks/ui_screenshots.py --out ui-shots                 # its own server (PostgreSQL when
                                                                       # installed, else SQLite), basic auth
    python benchmarks/ui_screenshots.py --out ui-shots --api-url http://127.0.0.1:4200/api --auth admin:pw
        # a running server with data-refresh/daily deployed and a worker on its pool

Prints one row per page (what was checked, the PNG) and ends with one key=value line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1400, 1000)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, auth: str | None = None, window: tuple[int, int] = WINDOW):
        self.binary, self.auth, self.window = binary, auth, window
        self.profile = Path(tempfile.mkdtemp(prefix="cptflow-chromium-"))
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._id = 0

    def __enter__(self) -> Chromium:
        args = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                f"--window-size={self.window[0]},{self.window[1]}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file, deadline = self.profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1) and time.monotonic() < deadline:
            assert self.proc.poll() is None, "chromium exited at start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        from websockets.sync.client import connect

        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.window[0], height=self.window[1],
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        if self.auth:  # what the UI's login page stores, set before any of the UI's scripts run
            token = base64.b64encode(self.auth.encode()).decode()
            self.call("Page.addScriptToEvaluateOnNewDocument",
                      source=f"localStorage.setItem('prefect-password', {json.dumps(token)});")  # fmt: skip
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, ready: str = "true", timeout: float = 60.0) -> bool:
        """Load ``url`` and wait until the JS expression ``ready`` holds (the UI fetches after load); then let
        images finish. Returns whether ``ready`` held in time."""
        self.call("Page.navigate", url=url)
        deadline, held = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            held = bool(self.evaluate(f"document.readyState === 'complete' && !!({ready})"))
            if held:
                break
            time.sleep(0.5)
        self.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
        time.sleep(1.0)  # the UI's transitions
        return held

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def scroll_to_end(self) -> None:
        """Scroll the window and every scrolled element to its end (the UI scrolls inside a container)."""
        self.evaluate("window.scrollTo(0, document.body.scrollHeight); for (const e of document.querySelectorAll"
                      "('*')) { if (e.scrollHeight > e.clientHeight + 10) e.scrollTop = e.scrollHeight; }")  # fmt: skip
        time.sleep(1.0)

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def text(self) -> str:
        return self.evaluate("document.body.innerText")

    def broken_images(self) -> list[str]:
        """Images that finished loading with nothing to show (a broken link)."""
        return self.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)"
                             ".map(i => i.getAttribute('src'))")  # fmt: skip


def ui_base(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


async def run_artifacts(client, flow_run_id) -> list:
    """The artifacts of a flow run and of its subflow runs (ingest and curate publish their progress)."""
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
    return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))


def shoot_run(browser: Chromium, api_url: str, run, artifacts: list, out: Path) -> list[dict]:
    """Screenshots of the runs list, the run's page, its report and its progress artifacts, with what each
    showed. ``run`` is the finished flow run; ``artifacts`` its and its subflows' artifacts."""
    base, rows = ui_base(api_url), []
    name = json.dumps(run.name)
    browser.open(f"{base}/runs", ready=f"document.body.innerText.includes({name})")
    rows.append(_row("runs list", browser, out / "runs.png", run.name))
    # The run's logs load after its header: wait for its last line.
    browser.open(f"{base}/runs/flow-run/{run.id}",
                 ready=f"document.body.innerText.includes({name}) && document.body.innerText.includes('Finished in')")
    rows.append(_row("flow run", browser, out / "flow_run.png", run.name))
    report = next((a for a in artifacts if a.type == "markdown" and (a.key or "").endswith("-run-report")), None)
    if report is None:
        report = next(a for a in artifacts if a.type == "markdown")
    browser.open(f"{base}/artifacts/artifact/{report.id}",
                 ready=f"document.body.innerText.includes({json.dumps(report.key)}) && document.images.length > 0")
    rows.append(_row(f"report {report.key}", browser, out / "report.png", report.key or ""))
    browser.scroll_to_end()
    rows.append(_row(f"report {report.key} (end)", browser, out / "report_end.png", report.key or ""))
    for artifact in (a for a in artifacts if a.type == "progress"):
        browser.open(f"{base}/artifacts/artifact/{artifact.id}", ready="document.body.innerText.includes('%')")
        row = _row(f"progress {artifact.key or artifact.id}", browser, out / f"progress-{artifact.id}.png", "")
        row["progress"] = artifact.data
        rows.append(row)
    return rows


def _row(page: str, browser: Chromium, path: Path, expect: str) -> dict:
    browser.screenshot(path)
    text = browser.text()
    return {"page": page, "png": path, "shows_expected": expect in text, "broken_images": browser.broken_images(),
            "text": text}  # fmt: skip


def print_table(rows: list[dict]) -> None:
    print(f"{'page':<44} {'expected text':>13} {'broken images':>13} {'progress':>9}  png")
    for row in rows:
        progress = f"{row['progress']:.0f} %" if "progress" in row else "-"
        print(f"{row['page']:<44} {str(row['shows_expected']):>13} {len(row['broken_images']):>13} "
              f"{progress:>9}  {row['png']}")  # fmt: skip


async def _finished_run(api_url: str, auth: str, deployment: str, run_id: str, overrides: list[str]):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}):
        async with get_client() as client:
            dep = await client.read_deployment_by_name(deployment)
            created = await client.create_flow_run_from_deployment(
                dep.id, parameters={"overrides": [f"run_id={run_id}", *overrides]}
            )
            deadline, run = time.monotonic() + 900, created
            while not (run := await client.read_flow_run(run.id)).state.is_final():
                assert time.monotonic() < deadline, f"{run.name} not finished in 900 s: {run.state}"
                await asyncio.sleep(2)
            return created.name, run, await run_artifacts(client, run.id)


def _own_server(work: Path):
    """A server, pool, deployment and worker as tests/flows/test_real_server.py starts them."""
    from tests.flows import test_real_server as real

    pg = real.Postgres(real._pg_bin()) if real._pg_bin() else None
    db = pg.start() if pg else f"sqlite+aiosqlite:///{work / 'prefect.db'}"
    srv = real.Server(work, db)
    srv.start()
    assert srv.cli("work-pool", "create", real.POOL, "--type", "process").returncode == 0
    worker = [str(real.BIN / "prefect"), "worker", "start", "--pool", real.POOL, "--install-policy", "never"]
    srv.background("worker", worker, srv.client_env)
    deployed = srv.cli("--no-prompt", "deploy", "--prefect-file", str(real._deployment_file(work)), "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return srv, pg, real.AUTH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("ui-screenshots"))
    parser.add_argument("--api-url", help="a running server's API (default: start one)")
    parser.add_argument("--auth", default=os.environ.get("PREFECT_API_AUTH_STRING"), help="user:password")
    parser.add_argument("--deployment", default="data-refresh/daily")
    parser.add_argument("--set", action="append", default=[], help="a run override (root=..., ...)")
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cptflow-ui-"))
    srv = pg = None
    try:
        if args.api_url is None:
            srv, pg, args.auth = _own_server(work)
            args.api_url = srv.url
        run_id = f"ui-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        first_name, run, artifacts = asyncio.run(
            _finished_run(args.api_url, args.auth, args.deployment, run_id, args.set)
        )
        run_s = time.monotonic() - started
        with Chromium(binary, auth=args.auth) as browser:
            rows = shoot_run(browser, args.api_url, run, artifacts, args.out)
    finally:
        if srv is not None:
            srv.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"flow run {run.name} (created as {first_name!r}): {run.state.name} in {run_s:.0f} s; "
          f"UI at {ui_base(args.api_url)}")
    # The server's random name is the run's name until the flow renames it at start: only the worker's first
    # log lines may carry it, never the runs list or the run page's heading (above its Logs tab).
    random_shown = sum(first_name in r["text"].split("\nLogs\n")[0] for r in rows[:2])
    print_table(rows)
    progress = [r["progress"] for r in rows if "progress" in r]
    print(f"state={run.state.name} name_has_run_id={run_id in run.name} "
          f"pages_showing_name={sum(r['shows_expected'] for r in rows[:2])} random_name_shown={random_shown} "
          f"broken_images={sum(len(r['broken_images']) for r in rows)} progress_artifacts={len(progress)} "
          f"progress_min={min(progress, default=0):.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
