"""Train flow: resolve the starting checkpoint, tokenize and pack the mix (or take given shards), run CPT in a
subprocess."""

from __future__ import annotations

from prefect import flow

from cpt_core.config import RunConfig
from cpt_core.layout import RunLayout
from flows.run_names import flow_run_name
from tasks.stages import (
    base_model_task,
    prepare_model_task,
    tokenize_task,
    train_task,
    use_shards_task,
    with_retries,
)


@flow(name="train", flow_run_name=flow_run_name("train"), log_prints=True)
def train_flow(config: RunConfig, layout: RunLayout, shards: str | None = None) -> dict:
    """``shards``: a tokenize stage's output folder (``train/*.arrow``, ``heldout/``) to train on as it is."""
    start = with_retries(base_model_task, config.retry)(config.base_model, layout)
    start = with_retries(prepare_model_task, config.retry)(config.model, layout, start)
    if shards is None:
        tokens = with_retries(tokenize_task, config.retry)(config.tokenize, layout, start, config.knowledge_graph)
    else:
        tokens = use_shards_task(layout, shards)
    train = with_retries(train_task, config.retry)(config.train, layout, start["model_dir"])
    return {"start": start, "tokenize": tokens, "train": train}
