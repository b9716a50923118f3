"""The curate pipeline on datatrove's local, Slurm and Ray executors: same kept documents, failures reported.

A session fixture starts a real single-node Slurm cluster from a temp dir (its own munge key and socket, free
ports, no accounting, no cgroups; slurmctld and slurmd stopped by PID at the end) and another a local Ray.
They skip, saying why, only where Slurm (``apt-get install slurm-wlm munge``) or Ray (``cptflow[ray]``) is
not installed, or where Slurm's daemons cannot run (not root).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from datatrove.pipeline.base import PipelineStep
from pydantic import ValidationError

from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.executor import (
    ExecutorError,
    LocalExecutorConfig,
    RayExecutorConfig,
    SlurmExecutorConfig,
    run_pipeline,
)
from cpt_core.ingest.extract import ExtractConfig, run_extract
from cpt_core.stage import config_hash
from tests.curate.test_pipeline import DOCS
from tests.ingest.test_extract import PAGES, _record

pytestmark = pytest.mark.executors

ROOT = Path(__file__).resolve().parents[2]
PARTITION = "cptflow"
SBIN = ("/usr/sbin", "/usr/local/sbin")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(SBIN))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_project_on_path(env: dict) -> None:
    """Jobs and Ray workers import the pipeline's steps (cpt_core, this module) from this checkout."""
    parts = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))


SLURM_CONF = """\
ClusterName=cptflowtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
DependencyParameters=kill_invalid_depend
SchedulerParameters=sched_interval=1
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _start_slurm(folder: Path) -> list[subprocess.Popen]:
    """munged, slurmctld and slurmd in the foreground under ``folder``; returns them, first started first."""
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = folder / "munge.sock"
    logs = open(folder / "daemons.out", "ab")  # noqa: SIM115 - closed with the daemons' folder
    started = [
        subprocess.Popen(
            [_which("munged"), "-F", "--force", f"--socket={sock}", f"--key-file={key}",
             f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
             f"--seed-file={folder / 'munged.seed'}"],
            stdout=logs, stderr=logs, start_new_session=True,
        )
    ]
    _wait_for(lambda: sock.exists(), 10, "munged did not create its socket", folder)
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    conf = folder / "slurm.conf"
    # Slurm refuses a node that has less memory or fewer CPUs than configured; the tests ask 2 x 1 GB.
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**2 * 0.9)
    conf.write_text(SLURM_CONF.format(
        host=host, ctld_port=_free_port(), d_port=_free_port(), socket=sock, dir=folder,
        cpus=os.cpu_count() or 1, mem_mb=mem_mb, partition=PARTITION,
    ))
    os.environ["SLURM_CONF"] = str(conf)
    for cmd in ([_which("slurmctld"), "-D", "-i", "-f", str(conf)], [_which("slurmd"), "-D", "-f", str(conf)]):
        started.append(subprocess.Popen(cmd, stdout=logs, stderr=logs, start_new_session=True))
    return started


def _wait_for(ready, seconds: float, message: str, folder: Path) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            logs = "".join(p.read_text(errors="replace")[-2000:] for p in sorted(folder.glob("*.log")))
            raise RuntimeError(f"{message} within {seconds}s; logs in {folder}:\n{logs}")
        time.sleep(0.2)


def _node_idle() -> bool:
    out = subprocess.run(["sinfo", "--noheader", "--format", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node Slurm cluster for this session; yields its partition name."""
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo") if not _which(t)]
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs slurmd, which needs root")
    folder = Path(tempfile.mkdtemp(prefix="slurm-"))  # short: the munge socket path has a length limit
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH")}
    _with_project_on_path(os.environ)
    daemons = _start_slurm(folder)
    try:
        _wait_for(_node_idle, 30, "the Slurm node did not become idle", folder)
        yield PARTITION
    finally:
        for proc in reversed(daemons):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 2 CPUs and a small object store for this session."""
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed: pip install 'cptflow[ray]'")
    folder = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths have a length limit
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "PYTHONPATH")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # else Ray writes a token under ~/.ray
    _with_project_on_path(os.environ)
    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, _temp_dir=folder,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        shutil.rmtree(folder, ignore_errors=True)


def _write_input(folder: Path) -> Path:
    """DOCS in two files, so that two tasks each get a share; without Korean, whose tokenizer takes seconds
    to load in every task."""
    (folder / "documents").mkdir(parents=True)
    docs = [doc for doc in DOCS if doc["id"] != "ko"]
    for n, part in enumerate((docs[::2], docs[1::2])):
        with gzip.open(folder / "documents" / f"{n:05d}.jsonl.gz", "wt", encoding="utf-8") as fh:
            for doc in part:
                fh.write(json.dumps({"metadata": {"url": f"https://example.org/{doc['id']}"}, **doc}) + "\n")
    return folder


def _contents(folder: Path) -> dict[str, list[dict]]:
    """Every JSONL file under ``folder`` (documents/, dropped/) by relative path, decoded line by line."""
    out = {}
    for path in sorted(folder.rglob("*.jsonl*")):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
            out[str(path.relative_to(folder))] = [json.loads(line) for line in fh]
    return out


CURATE_STEPS = ("language", "quality", "exact_dedup")


def _curate(tmp: Path, source: Path, executor: dict) -> dict[str, dict]:
    cfg = CurateConfig.model_validate({"language": {"languages": ["en"]}, "executor": executor})
    manifests, current = {}, source
    for step in CURATE_STEPS:
        out = tmp / "curate" / step
        manifests[step] = run_curate_step(step, cfg, current, out, tmp / "state", "run-1")
        current = out
    return manifests


class FailOnRank(PipelineStep):
    """Raises in one task, as a bug or bad input would."""

    name = "fail on rank"

    def __init__(self, fail_rank: int):
        super().__init__()
        self.fail_rank = fail_rank

    def run(self, data, rank: int = 0, world_size: int = 1):
        if rank == self.fail_rank:
            raise RuntimeError(f"task {rank} fails on purpose")
        yield from data or ()


def test_executor_kind_and_options_stay_out_of_stage_keys():
    local = CurateConfig.model_validate({"executor": {"tasks": 2}})
    slurm = CurateConfig.model_validate(
        {"executor": {"kind": "slurm", "tasks": 2, "partition": "p", "mem_per_cpu_gb": 4, "workers": 8}}
    )
    ray = CurateConfig.model_validate({"executor": {"kind": "ray", "tasks": 2, "address": "auto"}})
    assert isinstance(slurm.executor, SlurmExecutorConfig) and isinstance(ray.executor, RayExecutorConfig)
    assert config_hash(local.executor) == config_hash(slurm.executor) == config_hash(ray.executor)
    assert config_hash(local.executor) != config_hash(CurateConfig().executor)  # tasks name the files
    with pytest.raises(ValidationError, match="executor.kind must be one of local, slurm, ray"):
        CurateConfig.model_validate({"executor": {"kind": "kubernetes"}})
    with pytest.raises(ValidationError, match="partition"):
        CurateConfig.model_validate({"executor": {"kind": "slurm"}})
    with pytest.raises(ValidationError, match="address"):
        CurateConfig.model_validate({"executor": {"kind": "local", "address": "auto"}})


def test_slurm_venv_path_must_be_the_activate_file(tmp_path):
    cfg = SlurmExecutorConfig(partition="p", venv_path=str(tmp_path))
    with pytest.raises(ValueError, match="bin/activate file, not a folder"):
        run_pipeline([FailOnRank(0)], tmp_path / "logs", cfg)


@pytest.mark.timeout(300)
def test_same_kept_documents_on_local_slurm_and_ray(tmp_path, slurm_cluster, ray_cluster):
    source = _write_input(tmp_path / "extract")
    executors = {
        "local": {"kind": "local", "tasks": 2, "workers": 2},
        "slurm": {"kind": "slurm", "tasks": 2, "partition": slurm_cluster, "mem_per_cpu_gb": 1,
                  "poll_s": 0.5, "timeout_s": 120},
        "ray": {"kind": "ray", "tasks": 2, "timeout_s": 120},
    }
    results = {kind: _curate(tmp_path / kind, source, executor) for kind, executor in executors.items()}

    local = results["local"]
    assert local["language"]["summary"]["dropped"] == {"language_other": 1}
    assert local["quality"]["summary"]["dropped"] == {"gopher_dup_line_frac": 1}
    assert local["exact_dedup"]["summary"]["dropped"] == {"exact_duplicate": 1}
    expected = {step: _contents(tmp_path / "local" / "curate" / step) for step in CURATE_STEPS}
    assert len(expected["language"]) >= 2  # both tasks wrote documents
    for kind in ("slurm", "ray"):
        for step in CURATE_STEPS:
            summary, want = results[kind][step]["summary"], local[step]["summary"]
            for field in ("docs_in", "docs_out", "dropped", "languages"):
                assert summary[field] == want[field], (kind, step, field)
            assert _contents(tmp_path / kind / "curate" / step) == expected[step], (kind, step)

    # The executor is not part of the stage key: a finished stage is reused whichever runs it next.
    again = _curate(tmp_path / "local", source, executors["slurm"])
    assert all(m["skipped"] for m in again.values())


@pytest.mark.timeout(120)
def test_extract_on_ray_gives_the_local_documents(tmp_path, ray_cluster):
    from warcio.warcwriter import WARCWriter

    crawl = tmp_path / "crawl"
    (crawl / "warc").mkdir(parents=True)
    with open(crawl / "warc" / "crawl-00000.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, (body, ctype, ptype) in PAGES.items():
            _record(writer, url, body, ctype, ptype)
    local = run_extract(ExtractConfig(min_chars=30), crawl, tmp_path / "local")["summary"]
    ray = run_extract(ExtractConfig(min_chars=30, executor={"kind": "ray"}), crawl, tmp_path / "ray")["summary"]
    assert local["docs_out"] > 0
    assert (ray["docs_in"], ray["docs_out"], ray["dropped"]) == (local["docs_in"], local["docs_out"], local["dropped"])
    expected = _contents(tmp_path / "local")
    assert any(name.startswith("documents/") for name in expected)
    assert _contents(tmp_path / "ray") == expected


@pytest.mark.timeout(120)
def test_failed_slurm_task_is_an_error_naming_it(tmp_path, slurm_cluster):
    cfg = SlurmExecutorConfig(tasks=2, partition=slurm_cluster, mem_per_cpu_gb=1, poll_s=0.5, timeout_s=60)
    with pytest.raises(ExecutorError, match=r"1 of 2 tasks failed \(tasks 1\)") as err:
        run_pipeline([FailOnRank(1)], tmp_path / "logs", cfg)
    message = str(err.value)
    assert str(tmp_path / "logs" / "logs" / "task_00001.log") in message
    assert "fails on purpose" in message
    assert (tmp_path / "logs" / "completions" / "00000").is_file()
    assert not (tmp_path / "logs" / "executor.pik").exists()  # may hold credentials: gone once the job ended


@pytest.mark.timeout(120)
def test_slurm_timeout_cancels_the_job(tmp_path, slurm_cluster):
    cfg = SlurmExecutorConfig(partition=slurm_cluster, mem_per_cpu_gb=1, poll_s=0.2, timeout_s=0.5)
    with pytest.raises(ExecutorError, match="executor.timeout_s"):
        run_pipeline([FailOnRank(-1)], tmp_path / "logs", cfg)


@pytest.mark.timeout(120)
def test_failed_ray_task_is_an_error_and_oversized_requests_are_refused(tmp_path, ray_cluster):
    cfg = RayExecutorConfig(tasks=2, timeout_s=60)
    with pytest.raises(ExecutorError, match=r"ray executor: 1 of 2 tasks failed \(tasks 0\)"):
        run_pipeline([FailOnRank(0)], tmp_path / "logs", cfg)
    too_big = RayExecutorConfig(mem_per_cpu_gb=10_000)
    with pytest.raises(ExecutorError, match="would wait forever"):
        run_pipeline([FailOnRank(-1)], tmp_path / "big", too_big)
    assert LocalExecutorConfig().kind == "local"
