"""Tokenize stage, streaming side: flat memory in corpus size, shards `datasets` reads, the boundary index,
token weights and a schedule over training."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter

from cpt_core.data.mixing import MixPhase
from cpt_core.data.shards import read_boundary_index
from cpt_core.data.tokenize import PackedSequences, TokenizeConfig, iter_sequences, run_tokenize
from cpt_core.train.base_model import build_tiny_llama

WORDS = "alder guild weaver smith potter mason bolt blade jar stone market salt wool river bridge clerk".split()


def _doc(i: int, words: int = 300) -> str:
    # Distinct content per document (so none are near copies), deterministic.
    return " ".join(f"{WORDS[(i * 7 + k * 13) % len(WORDS)]}{(i * 31 + k) % 97}" for k in range(words)) + "."


def _write_docs(folder: Path, n: int, words: int = 300) -> Path:
    with JsonlWriter(str(folder / "documents")) as writer:
        for i in range(n):
            writer.write(Document(text=_doc(i, words), id=f"d{i}", metadata={"language": "en"}), rank=0)
    return folder


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return build_tiny_llama(root / "tiny", [_doc(i) for i in range(40)], vocab_size=300, seq_len=32)


MEASURE = textwrap.dedent(
    """
    import json, resource, sys, tracemalloc
    from pathlib import Path
    from cpt_core.data.tokenize import TokenizeConfig, load_fast_tokenizer, run_tokenize
    from cpt_core.train.base_model import tokenizer_fingerprint
    import datasketch, datatrove.pipeline.writers  # imports and the tokenizer's first load stay out of the peak
    docs, tok, out = map(Path, sys.argv[1:4])
    load_fast_tokenizer(tok), tokenizer_fingerprint(tok)
    cfg = TokenizeConfig(seq_len=64, replay_ratio=0.0, synthetic_qa=False, heldout_fraction=0.0,
                         shard_sequences=64)
    tracemalloc.start()
    s = run_tokenize(cfg, docs, tok, out)["summary"]
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"peak": peak, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "tokens": s["train_tokens"]}))
    """
)


def _measure(docs: Path, tok: Path, out: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", MEASURE, str(docs), str(tok), str(out)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_in_corpus_size(tmp_path, tok):
    # A fresh process each, so the peak is the stage's own; N is above one tokenizer batch (256 documents).
    small = _measure(_write_docs(tmp_path / "n", 260, words=100), tok, tmp_path / "tok-n")
    large = _measure(_write_docs(tmp_path / "4n", 1040, words=100), tok, tmp_path / "tok-4n")
    assert large["tokens"] > 3.5 * small["tokens"]
    ratio = large["peak"] / small["peak"]
    print(f"tracemalloc peak N={small['peak']} 4N={large['peak']} ratio={ratio:.2f}; "
          f"max RSS kB N={small['rss_kb']} 4N={large['rss_kb']}")  # fmt: skip
    # Holding the corpus' tokens scales the peak about 4x; streaming keeps only a per-document order.
    assert ratio < 1.8


def test_shards_load_with_datasets_and_the_boundary_index_places_every_document(tmp_path, tok):
    docs = _write_docs(tmp_path / "c", 30, words=60)
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.0, synthetic_qa=False, heldout_fraction=0.1, shard_sequences=20)
    s = run_tokenize(cfg, docs, tok, tmp_path / "tokens")["summary"]
    shards = sorted((tmp_path / "tokens" / "train").glob("shard-*.arrow"))
    assert len(shards) == s["shards"] >= 2

    from datasets import Dataset, load_dataset

    one = Dataset.from_file(str(shards[0]))
    assert len(one) == 20 and one[3]["input_ids"] == PackedSequences(tmp_path / "tokens")[3].tolist()
    ds = load_dataset("arrow", data_files=[str(p) for p in shards], split="train", cache_dir=str(tmp_path / "hf"))
    assert ds["input_ids"] == list(iter_sequences(tmp_path / "tokens"))

    # The index says where each document starts and how long it is: slicing the stream there gives it back.
    index = read_boundary_index(tmp_path / "tokens").to_pylist()
    assert len(index) == s["docs_by_source"]["domain"] == s["docs_out"]
    stream = [t for seq in iter_sequences(tmp_path / "tokens") for t in seq]
    sep = s["separator_id"]
    for row in index:
        start = ((row["shard"] * 20 + row["row"]) * 32) + row["offset"]
        piece = stream[start : start + row["kept"]]
        assert len(piece) == row["kept"] and sep not in piece[:-1]
        if row["kept"] == row["length"]:
            assert piece[-1] == sep
    assert sum(r["kept"] for r in index) == s["train_tokens"]
    assert len({r["doc_id"] for r in index}) == len(index)


def test_token_weights_and_schedule(tmp_path, tok):
    docs = _write_docs(tmp_path / "c", 40, words=40)
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"text": _doc(1000 + i, 20)}) + "\n" for i in range(200)))
    base = {"seq_len": 32, "synthetic_qa": False, "heldout_fraction": 0.1, "replay": {"source": str(replay)}}

    mixed = TokenizeConfig(**base, mix={"domain": 0.75, "replay": 0.25})
    short = TokenizeConfig(**base, replay_ratio=0.25)
    a = run_tokenize(mixed, docs, tok, tmp_path / "a")["summary"]
    b = run_tokenize(short, docs, tok, tmp_path / "b")["summary"]
    assert b["tokens_by_source"] == a["tokens_by_source"]
    assert list(iter_sequences(tmp_path / "a")) == list(iter_sequences(tmp_path / "b"))  # the same recipe
    assert abs(a["mix"]["replay"] - 0.25) < 0.02 and a["mix_target"] == {"domain": 0.75, "replay": 0.25}
    again = run_tokenize(mixed, docs, tok, tmp_path / "a2")["summary"]
    assert again["tokens_by_source"] == a["tokens_by_source"]  # deterministic

    phase = MixPhase(from_fraction=0.8, weights={"domain": 0.9, "replay": 0.1})
    sched = TokenizeConfig(**base, mix={"domain": 0.7, "replay": 0.3}, schedule=[phase])
    s = run_tokenize(sched, docs, tok, tmp_path / "s")["summary"]
    first, last = s["schedule"]
    assert (first["from_fraction"], first["to_fraction"], last["from_fraction"]) == (0.0, 0.8, 0.8)
    assert abs(first["replay_share"] - 0.3) < 0.03 and abs(last["replay_share"] - 0.1) < 0.03
    assert sum(p["tokens_by_source"]["replay"] for p in s["schedule"]) == s["tokens_by_source"]["replay"]
    # Phases come in order: the last 20 % of the packed stream is the domain-heavy phase.
    index = read_boundary_index(tmp_path / "s").to_pylist()
    phases = [r["phase"] for r in index]
    assert phases == sorted(phases) and phases[-1] == 1
    assert 0.7 < sum(r["kept"] for r in index if r["phase"] == 0) / s["train_tokens"] < 0.9
    assert json.loads((tmp_path / "s" / "mix.json").read_text())["schedule"] == s["schedule"]


def test_bad_mix_is_named():
    with pytest.raises(ValueError, match="tokenize.mix: unknown source"):
        TokenizeConfig(mix={"domian": 1.0})
    with pytest.raises(ValueError, match="replay_ratio"):
        TokenizeConfig(mix={"domain": 0.9, "replay": 0.1}, replay_ratio=0.25)
    with pytest.raises(ValueError, match=r"schedule\[0\].weights"):
        TokenizeConfig(schedule=[{"from_fraction": 0.5, "weights": {"domain": -1}}])
    with pytest.raises(ValueError, match="increase strictly"):
        TokenizeConfig(schedule=[{"from_fraction": 0.5, "weights": {"domain": 1}},
                                 {"from_fraction": 0.4, "weights": {"domain": 1}}])  # fmt: skip
