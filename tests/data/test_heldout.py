import random

from cpt_core.data.heldout import near_clusters, split_heldout

WORDS = ("river harbour lantern orchard meadow copper violet thunder marble falcon garden silver canyon "
         "willow ember quartz prairie glacier cobalt harvest").split()


def article(seed: int, n: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def doc(doc_id: str, text: str) -> dict:
    return {"id": doc_id, "text": text, "metadata": {"language": "en"}}


def test_split_is_by_content_not_id_capped_and_order_free():
    docs = [doc(f"d{i}", article(i)) for i in range(300)]
    train, held = split_heldout(docs, 0.1, 200)
    assert 10 < len(held) < 60 and len(train) + len(held) == 300
    _, held_r = split_heldout(list(reversed(docs)), 0.1, 200)
    assert {d["id"] for d in held_r} == {d["id"] for d in held}
    # The same texts under other ids (another URL) fall on the same side.
    renamed = [doc(f"https://mirror/{i}", d["text"]) for i, d in enumerate(docs)]
    _, held_renamed = split_heldout(renamed, 0.1, 200)
    assert {d["text"] for d in held_renamed} == {d["text"] for d in held}
    # More documents do not change an earlier document's side.
    _, held_more = split_heldout(docs + [doc(f"e{i}", article(1000 + i)) for i in range(50)], 0.1, 200)
    assert {d["id"] for d in held} <= {d["id"] for d in held_more}
    assert len(split_heldout(docs, 0.5, 7)[1]) <= 7
    assert split_heldout(docs, 0.0, 5)[1] == []


def test_near_duplicate_clusters_stay_on_one_side():
    docs = []
    for i in range(120):
        text = article(i)
        docs.append(doc(f"a{i}", text))
        # a near copy: the same article with a changed ending and a different id
        docs.append(doc(f"b{i}", text + " updated later with one more line"))
    clusters = near_clusters(docs)
    assert all(clusters[2 * i] == clusters[2 * i + 1] for i in range(120))
    assert len(set(clusters)) == 120
    train, held = split_heldout(docs, 0.2, 500)
    held_ids = {d["id"] for d in held}
    assert held_ids, "some clusters are held out"
    for i in range(120):
        assert (f"a{i}" in held_ids) == (f"b{i}" in held_ids), f"cluster {i} was split across sides"


def test_tiny_corpora():
    two = [doc("x", article(1)), doc("y", article(2))]
    train, held = split_heldout(two, 0.0001, 5)
    assert len(held) == 1 and len(train) == 1, "two distinct documents: one is held out"
    copies = [doc("x", article(1)), doc("y", article(1) + " again")]
    assert split_heldout(copies, 0.9, 5)[1] == [], "a single cluster is never held out whole"
    assert split_heldout([doc("only", article(3))], 0.5, 5) == ([doc("only", article(3))], [])
