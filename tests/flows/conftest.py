"""One Prefect test harness per session, a tiny model, and a small demo-site run config."""

from __future__ import annotations

import socket

import pytest
import trafilatura

from cpt_core.config import RunConfig, validate_config
from cpt_core.demo.site import DemoSiteConfig, build_site
from cpt_core.train.base_model import build_tiny_llama

# Timeouts leave room for a loaded 2-core machine: the slow page (6 s) must still be the only timeout.
SMALL_SITE = {"seed": 3, "n_facts": 16, "korean_share": 0.3, "slow_delay_s": 6.0}
SMALL_CRAWL = {"timeout_s": 3.0, "retries": 0, "max_pages": 300}


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama whose tokenizer is trained on the demo site's own text."""
    site = build_site(DemoSiteConfig(**SMALL_SITE))
    corpus = []
    for page in site.pages.values():
        if page.content_type.startswith("text/html"):
            text = trafilatura.extract(page.body.decode("utf-8", errors="replace"))
            if text:
                corpus.append(text)
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", corpus, vocab_size=600, seq_len=128)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_config(root, model_dir, run_id="r1", **sections) -> RunConfig:
    data = {
        "name": "t",
        "root": str(root),
        "run_id": run_id,
        "base_model": {"source": str(model_dir)},
        "ingest": {
            "sources": [{"kind": "demo", "site": {**SMALL_SITE, "port": free_port()}, "crawl": SMALL_CRAWL}],
            "extract": {"timeout_s": 30.0},
        },
        "curate": {"language": {"languages": ["en", "ko"]}},
        "tokenize": {"seq_len": 64, "replay": {"max_chars": 6000}, "epochs_of_domain": 1},
        "train": {"max_steps": 6, "micro_batch_size": 2, "checkpoint_every": 2, "precision": "fp32",
                  "lr": 1e-3},
        "evaluate": {"general_heldout": {"max_chars": 4000}, "domain_max_chars": 4000, "bpb_seq_len": 64},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return validate_config(data, "test")
