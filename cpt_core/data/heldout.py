"""The domain held-out split: chosen by content, with near-duplicate clusters kept on one side.

A document's side is fixed by what it says, not by its URL or id: the same text republished under another URL
lands on the same side. Documents that are near copies of each other (MinHash Jaccard estimate at or above
``NEAR_THRESHOLD`` on word 5-grams, or character n-grams for Korean/Japanese/Chinese) form one cluster, and a
cluster is held out or trained on as a whole, so held-out bits/byte never scores text the model trained on
in another wording of the same page.

Too few documents to hold any out falls back, in this order (the rule used is reported in ``mix.json`` as
``heldout_rule``):

1. ``content``: at least one cluster is held out, and at least one is left to train on;
2. ``parent_heldout``: the held-out set of the run this one continues from (the champion's), when given;
3. ``in_sample``: no held-out text exists at all (a first run with a single document): the training
   documents themselves are scored, and the domain figure is in-sample, which the report says.
"""

from __future__ import annotations

import hashlib

from datasketch import MinHash, MinHashLSH

from cpt_core.curate.dedup import exact_hash, shingles

NEAR_THRESHOLD = 0.5
NUM_PERM = 64
NGRAM = 5


def _score(key: str) -> float:
    """A uniform number in [0, 1) fixed by ``key`` alone."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:15], 16) / 16**15


def near_clusters(docs: list[dict]) -> list[int]:
    """Cluster index of each document: near copies (and exact copies) share one (union-find over LSH hits)."""
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    lsh = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=NUM_PERM)
    for i, doc in enumerate(docs):
        sig = MinHash(num_perm=NUM_PERM, seed=1)
        for gram in shingles(doc["text"], NGRAM, (doc.get("metadata") or {}).get("language")):
            sig.update(gram.encode("utf-8"))
        for j in lsh.query(sig):
            parent[find(i)] = find(int(j))
        lsh.insert(str(i), sig)
    return [find(i) for i in range(len(docs))]


def split_heldout(docs: list[dict], fraction: float, max_docs: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout) by content: whole clusters whose key hashes under ``fraction``, at most ``max_docs``.

    With two or more clusters and none chosen, the lowest-scoring cluster is held out, so a small corpus
    still has something to measure on; a single cluster is never held out whole.
    """
    if fraction <= 0 or not docs:
        return docs, []
    clusters: dict[int, list[int]] = {}
    for i, root in enumerate(near_clusters(docs)):
        clusters.setdefault(root, []).append(i)
    # A cluster's key is its smallest content hash (exact dedup's key): it does not depend on input order or on ids.
    scored = sorted((_score(min(exact_hash(docs[i]["text"]) for i in members)), members)
                    for members in clusters.values())
    held: set[int] = set()
    for score, members in scored:
        if score >= fraction:
            break
        if len(held) + len(members) <= max_docs:
            held.update(members)
    if len(held) == len(docs):  # never hold out everything
        held = set()
    if not held and len(scored) >= 2 and len(scored[0][1]) <= max_docs:
        held = set(scored[0][1])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]
