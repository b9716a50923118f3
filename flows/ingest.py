"""Ingest flow: crawl the sources into WARC files, then extract main text into documents."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.demo.server import serve
from cpt_core.demo.site import build_site
from cpt_core.layout import RunLayout
from tasks.stages import crawl_task, extract_task


@contextlib.contextmanager
def demo_sources(config: RunConfig, layout: RunLayout) -> Iterator[RunConfig]:
    """Serve the demo website while the block runs, pointing the crawl at it; a no-op when disabled."""
    if not config.demo_site.enabled:
        yield config
        return
    site = build_site(config.demo_site)
    kg_path = layout.sources / "knowledge_graph.jsonl"
    site.write_knowledge_graph(kg_path)
    with serve(site, "127.0.0.1", config.demo_site.port, config.demo_site.slow_delay_s) as base_url:
        # The demo server is ours, on loopback: allowed past the private-address guard, no politeness delay.
        crawl = config.ingest.crawl.model_copy(
            update={"seed_urls": [base_url], "allow_private_hosts": ["127.0.0.1"], "delay_s": 0.0}
        )
        ingest = config.ingest.model_copy(update={"crawl": crawl})
        yield config.model_copy(update={"ingest": ingest, "knowledge_graph": str(kg_path)})


@flow(name="ingest", log_prints=True)
def ingest_flow(config: RunConfig, layout: RunLayout) -> dict:
    """Crawl (WARC) then extract (datatrove + trafilatura). Returns the two stage manifests."""
    crawl = crawl_task(config.ingest.crawl, layout)
    extract = extract_task(config.ingest.extract, layout)
    get_run_logger().info(
        "ingest: %s pages fetched, %s documents extracted",
        crawl["summary"].get("docs_out", crawl["summary"].get("fetched")),
        extract["summary"].get("docs_out"),
    )
    return {"crawl": crawl, "extract": extract}
