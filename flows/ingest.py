"""Ingest flow: crawl the web and demo sources into WARC files, then extract main text from the crawl and
from the documents and WARC sources into one ``ingest/extract/documents/`` folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.demo.server import serve
from cpt_core.demo.site import build_site
from cpt_core.ingest.sources import DemoSource, WebSource
from cpt_core.layout import RunLayout
from flows.run_names import flow_run_name
from tasks.stages import crawl_task, extract_task, with_retries


@contextlib.contextmanager
def demo_sources(config: RunConfig, layout: RunLayout) -> Iterator[RunConfig]:
    """Serve the demo source's website while the block runs, as a web source seeded with its URL.

    A no-op without a demo source. The site's knowledge graph becomes the run's ``knowledge_graph`` unless the
    source hides it (``knowledge_graph: false``).
    """
    demo = config.ingest.demo
    if demo is None:
        yield config
        return
    site = build_site(demo.site)
    kg_path = layout.sources / "knowledge_graph.jsonl"
    site.write_knowledge_graph(kg_path)
    with serve(site, "127.0.0.1", demo.site.port, demo.site.slow_delay_s) as base_url:
        served = WebSource(name=demo.name, crawl=demo.served_crawl(base_url))
        sources = [served if isinstance(s, DemoSource) else s for s in config.ingest.sources]
        ingest = config.ingest.model_copy(update={"sources": sources})
        update = {"ingest": ingest, **({"knowledge_graph": str(kg_path)} if demo.knowledge_graph else {})}
        yield config.model_copy(update=update)


@flow(name="ingest", flow_run_name=flow_run_name("ingest"), log_prints=True)
def ingest_flow(config: RunConfig, layout: RunLayout) -> dict:
    """Crawl (WARC) then extract (datatrove + trafilatura). Returns the two stage manifests."""
    crawl_cfg = config.ingest.crawl
    crawl = with_retries(crawl_task, config.retry)(crawl_cfg, layout) if crawl_cfg is not None else _no_crawl()
    extract = with_retries(extract_task, config.retry)(
        config.ingest.extract, config.ingest.sources, layout, crawled=crawl_cfg is not None
    )
    get_run_logger().info(
        "ingest: %s pages fetched, %s documents extracted",
        crawl["summary"].get("docs_out", crawl["summary"].get("fetched")),
        extract["summary"].get("docs_out"),
    )
    return {"crawl": crawl, "extract": extract}


def _no_crawl() -> dict:
    line = "crawl: no web or demo source: nothing to crawl"
    return {"stage": "crawl", "skipped": True, "summary": {"docs_in": 0, "docs_out": 0, "dropped": {}, "log_line": line}}
