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


class ContentClusters:
    """Near-duplicate clusters built one document at a time, keeping only hashes and LSH band keys.

    Each ``add`` inserts the document's MinHash signature into the LSH index and unions it with every earlier
    document it collides with; the text itself is not kept. Memory grows with the number of documents (a few
    hundred bytes each), never with their length, so the held-out split needs no second copy of the corpus.
    """

    def __init__(self) -> None:
        self._lsh = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=NUM_PERM)
        template = MinHash(num_perm=NUM_PERM, seed=1)  # permutations drawn once, shared by every signature
        self._permutations, self._scheme = template.permutations, template.scheme
        self._parent: list[int] = []
        self._keys: list[str] = []  # exact-content hash of each document

    def __len__(self) -> int:
        return len(self._parent)

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def add(self, text: str, language: str | None = None) -> int:
        """Index of the new document; it joins the cluster of any earlier near copy."""
        i = len(self._parent)
        self._parent.append(i)
        self._keys.append(exact_hash(text))
        sig = MinHash(num_perm=NUM_PERM, seed=1, permutations=self._permutations, scheme=self._scheme)
        grams = [gram.encode("utf-8") for gram in shingles(text, NGRAM, language)]
        if grams:
            sig.update_batch(grams)
        for j in self._lsh.query(sig):
            self._parent[self._find(i)] = self._find(int(j))
        self._lsh.insert(str(i), sig)
        return i

    def roots(self) -> list[int]:
        return [self._find(i) for i in range(len(self._parent))]

    def held_out(self, fraction: float, max_docs: int) -> set[int]:
        """Indices of the held-out documents: whole clusters whose key hashes under ``fraction``, at most
        ``max_docs``.

        With two or more clusters and none chosen, the lowest-scoring cluster is held out, so a small corpus
        still has something to measure on; a single cluster is never held out whole.
        """
        n = len(self._parent)
        if fraction <= 0 or not n:
            return set()
        clusters: dict[int, list[int]] = {}
        for i, root in enumerate(self.roots()):
            clusters.setdefault(root, []).append(i)
        # A cluster's key is its smallest content hash (exact dedup's key): independent of input order and ids.
        scored = sorted((_score(min(self._keys[i] for i in members)), members) for members in clusters.values())
        held: set[int] = set()
        for score, members in scored:
            if score >= fraction:
                break
            if len(held) + len(members) <= max_docs:
                held.update(members)
        if len(held) == n:  # never hold out everything
            held = set()
        if not held and len(scored) >= 2 and len(scored[0][1]) <= max_docs:
            held = set(scored[0][1])
        return held


def _clusters_of(docs: list[dict]) -> ContentClusters:
    clusters = ContentClusters()
    for doc in docs:
        clusters.add(doc["text"], (doc.get("metadata") or {}).get("language"))
    return clusters


def near_clusters(docs: list[dict]) -> list[int]:
    """Cluster index of each document: near copies (and exact copies) share one (union-find over LSH hits)."""
    return _clusters_of(docs).roots()


def split_heldout(docs: list[dict], fraction: float, max_docs: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout) by content (see ``ContentClusters.held_out``)."""
    if fraction <= 0 or not docs:
        return docs, []
    held = _clusters_of(docs).held_out(fraction, max_docs)
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]
