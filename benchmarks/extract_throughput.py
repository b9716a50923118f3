"""Documents/s per core through the extract stage vs calling trafilatura directly on the same pages.

    .venv/bin/python benchmarks/extract_throughput.py [--pages 120]

Pages: Debian's python3.11-doc HTML (real, varied pages), fetched once with `apt-get download` and unpacked
with `dpkg-deb -x` under .cache/python3.11-doc; without apt, the demo site's HTML pages (the output says
which). Both sides run on one core and use the same trafilatura settings (precision, tables, metadata for the
date, no cross-document dedup). Ours reads the pages from a WARC file (written before the clock starts) and
adds what the stage does beyond trafilatura: charset detection, the per-document sandbox (a forked worker
with a timeout), the filter, JSONL writing and the manifest. Last line: key=value figures with ratio=.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "python3.11-doc"


def debian_pages() -> list[Path]:
    html = CACHE / "usr" / "share" / "doc" / "python3.11" / "html"
    if not html.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "python3.11-doc"], cwd=CACHE, check=True, capture_output=True)
        deb = next(CACHE.glob("python3.11-doc_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    return sorted(p for p in html.rglob("*.html") if p.stat().st_size > 2000)


def demo_pages() -> dict[str, bytes]:
    from cpt_core.demo.site import DemoSiteConfig, build_site

    site = build_site(DemoSiteConfig(n_facts=60))
    return {f"http://demo.local{path}": page.body for path, page in site.pages.items()
            if page.content_type.startswith("text/html") and page.body}


def load_pages(n: int) -> tuple[dict[str, bytes], str]:
    try:
        files = debian_pages()
        step = max(1, len(files) // n)
        chosen = files[::step][:n]
        return {f"https://docs.python.org/3.11/{p.name}": p.read_bytes() for p in chosen}, "python3.11-doc"
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return dict(list(demo_pages().items())[:n]), "demo site (python3.11-doc unavailable)"


def write_warc(pages: dict[str, bytes], path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, body in pages.items():
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers,
                warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
            ))


def direct(pages: dict[str, bytes]) -> tuple[float, int]:
    from trafilatura import bare_extraction

    started = time.perf_counter()
    kept = 0
    for url, body in pages.items():
        result = bare_extraction(body.decode("utf-8", "replace"), url=url, favor_precision=True,
                                 include_comments=False, include_tables=True, deduplicate=False, with_metadata=True)
        kept += bool(result and result.get("text"))
    return time.perf_counter() - started, kept


def ours(pages: dict[str, bytes], work: Path) -> tuple[float, int]:
    from cpt_core.executor import LocalExecutorConfig
    from cpt_core.ingest.extract import ExtractConfig, run_extract

    (work / "crawl" / "warc").mkdir(parents=True)
    write_warc(pages, work / "crawl" / "warc" / "pages.warc.gz")
    cfg = ExtractConfig(min_chars=1, timeout_s=120, executor=LocalExecutorConfig(tasks=1, workers=1))
    started = time.perf_counter()
    manifest = run_extract(cfg, work / "crawl", work / "extract")
    return time.perf_counter() - started, manifest["summary"]["docs_out"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=120)
    args = ap.parse_args()
    pages, origin = load_pages(args.pages)
    megabytes = sum(len(b) for b in pages.values()) / 1e6
    direct(dict(list(pages.items())[:5]))  # warm-up: trafilatura's lazy set-up
    t_direct, k_direct = direct(pages)
    with tempfile.TemporaryDirectory() as tmp:
        t_ours, k_ours = ours(pages, Path(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(pages)
    rows = [("trafilatura direct (reference)", t_direct, k_direct), ("cptflow extract stage", t_ours, k_ours)]
    print(f"pages: {n} from {origin}, {megabytes:.1f} MB of HTML, one core each")
    print(f"| {'pipeline':32} | {'seconds':>8} | {'docs kept':>9} | {'docs/s/core':>11} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 11}|{'-' * 13}|")
    for name, seconds, kept in rows:
        print(f"| {name:32} | {seconds:8.2f} | {kept:9d} | {n / seconds:11.1f} |")
    ratio = (n / t_ours) / (n / t_direct)
    print(f"pages={n} source={origin.split()[0]} direct_docs_per_s={n / t_direct:.1f} "
          f"ours_docs_per_s={n / t_ours:.1f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
