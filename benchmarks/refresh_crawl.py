"""A second refresh of the demo site: what the crawl fetches, skips and emits when little has changed.

    python benchmarks/refresh_crawl.py [--config configs/demo.yaml] [--changed 3] 2>/dev/null

The demo source's website (``configs/demo.yaml``: its site and crawl settings, served on 127.0.0.1 as the
flow serves it) is crawled twice on one root, as two weekly runs: run 1 on an empty crawl state, run 2 seeing
run 1's rows (conditional requests, recrawl policy, content hashes). Between the two, ``--changed`` English
articles get a new paragraph. Each crawl's WARC output then goes through the extract stage, so "emitted" is
the number of documents the refresh hands to curation.

Printed side by side for the two runs: requests sent, pages fetched and stored, pages answered ``304 Not
Modified`` or fetched with an unchanged body (not stored again), dropped by reason, documents extracted.
Last line: ``key=value`` figures of run 2.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

from cpt_core.config import load_config
from cpt_core.demo.server import serve
from cpt_core.demo.site import build_site
from cpt_core.ingest.crawl import crawl_with_state
from cpt_core.ingest.extract import run_extract

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _edit(site, count: int) -> list[str]:
    """Add a paragraph to the first ``count`` English articles; returns their paths."""
    paths = [p for p in sorted(site.pages) if p.startswith("/news/") and p.endswith(".html")][:count]
    for path in paths:
        page = site.pages[path]
        note = b"<p>Update: the organisers published a correction to this report on Monday morning.</p>"
        page.body = page.body.replace(b"</article>", note + b"</article>", 1)
    return paths


def _refresh(cfg, site, port: int, root: Path, run_id: str, earlier: list[str]) -> dict:
    demo = cfg.ingest.demo
    with serve(site, "127.0.0.1", port, demo.site.slow_delay_s) as base_url:
        crawl_cfg = demo.served_crawl(base_url)  # as the flow crawls it
        started = time.perf_counter()
        run = root / "runs" / run_id
        crawl = crawl_with_state(crawl_cfg, run / "crawl", root / "state", run_id, earlier_runs=earlier)
        seconds = time.perf_counter() - started
    extract = run_extract(cfg.ingest.extract, run / "crawl", run / "extract")
    s = crawl["summary"]
    return {
        "requests": s["requests"],
        "fetched": s["fetched"],
        "unchanged": s["dropped"].get("unchanged", 0),
        "dropped": {r: n for r, n in s["dropped"].items() if r != "unchanged"},  # the summary's drops, less 304s
        "emitted": extract["summary"]["docs_out"],
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    ap.add_argument("--changed", type=int, default=3, help="English articles edited between the two runs")
    args = ap.parse_args()
    cfg = load_config(args.config)
    if cfg.ingest.demo is None:
        raise SystemExit(f"{args.config}: no demo source in ingest.sources")
    site = build_site(cfg.ingest.demo.site)
    port = cfg.ingest.demo.site.port or _free_port()
    root = Path(tempfile.mkdtemp(prefix="refresh-crawl-"))
    first = _refresh(cfg, site, port, root, "week-1", [])
    edited = _edit(site, args.changed)
    second = _refresh(cfg, site, port, root, "week-2", ["week-1"])
    print(f"demo site of {args.config}: {len(site.pages)} paths; {len(edited)} articles edited between runs\n")
    print(f"| {'':34} | run 1 (empty state) | run 2 (refresh) |")
    print(f"|{'-' * 36}|---------------------|-----------------|")
    rows = [
        ("requests sent", "requests"),
        ("pages fetched and stored", "fetched"),
        ("unchanged (304 or same body)", "unchanged"),
        ("documents emitted by extract", "emitted"),
    ]
    for label, key in rows:
        print(f"| {label:34} | {first[key]:19} | {second[key]:15} |")
    print(f"| {'crawl seconds':34} | {first['seconds']:19.1f} | {second['seconds']:15.1f} |")
    for reason in sorted(set(first["dropped"]) | set(second["dropped"])):
        a, b = first["dropped"].get(reason, 0), second["dropped"].get(reason, 0)
        print(f"| {'dropped: ' + reason:34} | {a:19} | {b:15} |")
    dropped = sum(second["dropped"].values())
    print(
        f"changed={len(edited)} requests={second['requests']} fetched={second['fetched']} "
        f"unchanged={second['unchanged']} dropped={dropped} emitted={second['emitted']} "
        f"run1_fetched={first['fetched']} run1_emitted={first['emitted']} seconds={second['seconds']:.1f}"
    )


if __name__ == "__main__":
    main()
