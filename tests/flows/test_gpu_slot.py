"""Two trainings on one machine never hold its GPUs at once: the train task's Prefect concurrency slot."""

import threading
import time

from prefect import flow

from tasks.stages import gpu_slot


def test_second_training_waits_for_the_first(prefect_harness):
    spans: list[tuple[str, float, float]] = []

    @flow
    def training(name: str) -> None:
        with gpu_slot("test-gpus-slot"):
            start = time.monotonic()
            time.sleep(1.0)
            spans.append((name, start, time.monotonic()))

    threads = [threading.Thread(target=training, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(spans) == 2
    (_, _, first_end), (_, second_start, _) = sorted(spans, key=lambda s: s[1])
    assert second_start >= first_end  # the slot was held by one training at a time
