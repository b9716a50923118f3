"""Tokenize stage: held-out split, mixing, packing into Arrow shards, rerun skipping."""

import gzip
import json
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter
from transformers import AutoTokenizer

from cpt_core.data.general_text import GeneralTextConfig, general_texts
from cpt_core.data.knowledge_graph import Fact, qa_documents, save_facts
from cpt_core.data.tokenize import (
    PackedSequences,
    TokenizeConfig,
    iter_sequences,
    read_documents,
    run_tokenize,
)
from cpt_core.train.base_model import build_tiny_llama

REPLAY = GeneralTextConfig(source="stdlib-docstrings", max_chars=30_000)
EN = [
    f"Record {i}. The guild of {['weavers', 'smiths', 'potters', 'masons'][i % 4]} in Alder met on day {i} "
    f"and agreed a price of {i * 7} pennies for each {['bolt', 'blade', 'jar', 'stone'][i % 4]}. "
    f"Minutes were kept by clerk number {i % 9}." * (1 + i % 3)
    for i in range(36)
]
KO = [f"기록 {i}. 올더 마을의 장터는 {i}일에 열렸고 상인들은 소금과 양모를 팔았다." for i in range(4)]


def _facts() -> list[Fact]:
    return [
        Fact(
            id=f"f{i}",
            subject=f"Town {i}",
            relation="mayor",
            object=f"Mayor{i}",
            object_type="person",
            date="2024-01-01",
            statement=f"The mayor of Town {i} is Mayor{i}.",
            questions=[f"Who is the mayor of Town {i}?", f"Town {i} is led by whom?"],
            probe_question=f"Name the person who governs Town {i}.",
        )
        for i in range(6)
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack")
    tokenizer_dir = build_tiny_llama(root / "tiny", EN + KO + general_texts(REPLAY), vocab_size=400, seq_len=32)
    docs = root / "curated"
    with JsonlWriter(str(docs / "documents")) as writer:
        for i, text in enumerate(EN + KO):
            lang = "ko" if i >= len(EN) else "en"
            writer.write(Document(text=text, id=f"doc-{i}", metadata={"language": lang}), rank=0)
    kg = root / "facts.jsonl"
    save_facts(_facts(), kg)
    return root, docs, tokenizer_dir, kg


def _pieces(tokens_dir: Path, sep: int) -> list[tuple[int, ...]]:
    """The packed stream split at separators (the partial document after the last separator left out)."""
    stream = [t for seq in iter_sequences(tokens_dir) for t in seq]
    pieces, current = [], []
    for t in stream:
        if t == sep:
            pieces.append(tuple(current))
            current = []
        else:
            current.append(t)
    return pieces


def test_pack_mix_heldout_and_rerun(setup):
    root, docs, tokenizer_dir, kg = setup
    # Replay documents are taken whole, so the pool holds paragraph-sized documents for the ratio to be met.
    paragraphs = [p for text in general_texts(REPLAY) for p in text.split("\n\n") if len(p) > 80]
    (root / "replay.txt").write_text("\n\n".join(paragraphs))
    replay = GeneralTextConfig(source=str(root / "replay.txt"), max_chars=30_000)
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.25, replay=replay, shard_sequences=50, heldout_fraction=0.1)
    out = root / "tokens"
    calls = []
    manifest = run_tokenize(cfg, docs, tokenizer_dir, out, kg, progress=lambda d, t, m: calls.append(m))
    s = manifest["summary"]
    assert not manifest["skipped"] and calls

    # Every sequence exactly seq_len, in several shards, memory-mapped reader agrees with the iterator.
    seqs = list(iter_sequences(out))
    assert len(seqs) == s["sequences"] > 50 and all(len(q) == 32 for q in seqs)
    assert len(list((out / "train").glob("shard-*.arrow"))) == s["shards"] == -(-len(seqs) // 50)
    ds = PackedSequences(out)
    assert len(ds) == len(seqs) and ds[7].tolist() == seqs[7] and ds[-1].tolist() == seqs[-1]
    assert s["train_tokens"] == 32 * len(seqs) and 0 <= s["tokens_dropped_remainder"] < 32
    assert sum(s["tokens_by_source"].values()) == s["train_tokens"]
    assert s["train_tokens"] + s["tokens_dropped_remainder"] == s["tokens_packed"]
    assert s["special_tokens"]["adds_bos"] is False  # SmolLM2-style: the tokenizer adds no BOS

    # Held-out docs: 10 % by id hash, written with their language, never in the training stream.
    heldout = [json.loads(line) for line in (out / "heldout" / "domain.jsonl").read_text().splitlines()]
    assert s["heldout_docs"] == len(heldout) >= 1 and s["docs_out"] + len(heldout) == len(EN + KO)
    assert all(set(row) == {"id", "text", "language"} for row in heldout)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    sep = tok.eos_token_id
    enc = lambda text: tuple(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    pieces = _pieces(out, sep)
    heldout_ids = {enc(row["text"]) for row in heldout}
    train_domain = {enc(t) for i, t in enumerate(EN + KO) if f"doc-{i}" not in {r["id"] for r in heldout}}
    synthetic = {enc(t) for t in qa_documents(_facts(), cfg.seed)}
    replay_docs = [enc(t) for t in general_texts(replay)]
    assert not heldout_ids & set(pieces)

    # EOS separates whole documents: every complete piece is a domain doc, a QA doc or a replay doc prefix.
    counted = {"domain": 0, "synthetic_qa": 0, "replay": 0}
    for piece in pieces[1:]:
        if piece in train_domain:
            counted["domain"] += len(piece) + 1
        elif piece in synthetic:
            counted["synthetic_qa"] += len(piece) + 1
        else:
            assert piece in replay_docs, piece[:10]  # whole: a replay document is never cut short
            counted["replay"] += len(piece) + 1
    # The document cut by the end of the stream counts too (whichever source it was drawn from).
    stream = [t for seq in iter_sequences(out) for t in seq]
    tail = tuple(stream[len(stream) - stream[::-1].index(sep):]) if sep in stream else ()
    if tail:
        source = "replay" if any(doc[: len(tail)] == tail for doc in replay_docs) else (
            "synthetic_qa" if any(doc[: len(tail)] == tail for doc in synthetic) else "domain")
        counted[source] += len(tail)
    # Every training doc is in there, except at most the one cut off by the dropped remainder.
    assert len((train_domain | synthetic) - set(pieces)) <= 1

    # The realised mix is reported and matches the stream; replay is close to the requested ratio.
    total = sum(counted.values())
    assert abs(counted["replay"] / total - 0.25) < 0.03
    assert abs(s["mix"]["replay"] - 0.25) < 0.03 and s["mix"]["synthetic_qa"] > 0
    assert abs(s["mix"]["domain"] - counted["domain"] / total) < 0.03
    assert set(s["tokens_per_byte"]) == {"all", "en", "ko"} and s["tokens_per_byte"]["ko"] > s["tokens_per_byte"]["en"]
    assert json.loads((out / "mix.json").read_text())["mix"] == s["mix"]
    assert f"replay {s['mix']['replay']:.0%}" in s["log_line"] and s["separator_id"] == sep

    # Rerun: skipped. Another tokenizer: redone.
    assert run_tokenize(cfg, docs, tokenizer_dir, out, kg)["skipped"]
    other_tok = build_tiny_llama(root / "tiny2", EN, vocab_size=300, seq_len=32)
    assert not run_tokenize(cfg, docs, other_tok, out, kg)["skipped"]


def test_domain_epochs_repeat_shuffled_without_replay(setup):
    root, docs, tokenizer_dir, _ = setup
    base = TokenizeConfig(seq_len=32, replay_ratio=0.0, heldout_fraction=0.1)
    one = run_tokenize(base, docs, tokenizer_dir, root / "e1")["summary"]
    twice = run_tokenize(base.model_copy(update={"epochs_of_domain": 2.5}), docs, tokenizer_dir, root / "e25")
    s = twice["summary"]
    assert s["mix"]["replay"] == 0 and s["tokens_by_source"]["replay"] == 0
    assert s["docs_by_source"]["domain"] == round(2.5 * one["docs_by_source"]["domain"])
    assert 2.2 < s["train_tokens"] / one["train_tokens"] < 2.8
    sep = AutoTokenizer.from_pretrained(tokenizer_dir).eos_token_id
    pieces = _pieces(root / "e25", sep)
    adjacent = sum(a == b for a, b in zip(pieces, pieces[1:], strict=False))
    assert adjacent < len(pieces) // 10  # shuffled: copies of a document are not laid side by side


def test_synthetic_qa_can_get_its_own_number_of_copies(setup):
    root, docs, tokenizer_dir, kg = setup
    base = TokenizeConfig(seq_len=32, replay_ratio=0.0, epochs_of_domain=1.0)
    same = run_tokenize(base, docs, tokenizer_dir, root / "s1", knowledge_graph=kg)["summary"]
    more = run_tokenize(
        base.model_copy(update={"epochs_of_synthetic": 3.0}), docs, tokenizer_dir, root / "s3", knowledge_graph=kg
    )["summary"]
    assert more["docs_by_source"]["domain"] == same["docs_by_source"]["domain"]
    assert more["docs_by_source"]["synthetic_qa"] == 3 * same["docs_by_source"]["synthetic_qa"]
    ratio = more["tokens_by_source"]["synthetic_qa"] / same["tokens_by_source"]["synthetic_qa"]
    assert 2.7 < ratio < 3.3  # each copy has its own template draw, so lengths differ a little


def test_bad_input_is_named(tmp_path, setup):
    _, _, tokenizer_dir, _ = setup
    with pytest.raises(FileNotFoundError, match="no .jsonl"):
        run_tokenize(TokenizeConfig(), tmp_path, tokenizer_dir, tmp_path / "out")
    folder = tmp_path / "bad" / "documents"
    folder.mkdir(parents=True)
    with gzip.open(folder / "00000.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"id": "a", "text": "fine text"}) + "\n")
        fh.write(json.dumps({"id": "b", "text": "   "}) + "\n")
    assert read_documents(tmp_path / "bad")[1] == {"empty_text": 1}
    with gzip.open(folder / "00001.jsonl.gz", "wt") as fh:
        fh.write("{not json\n")
    with pytest.raises(ValueError, match=r"00001.jsonl.gz:1: not valid JSON"):
        read_documents(tmp_path / "bad")
    unreadable = []  # the stage's counting mode: named drops with file and line, the rest read on
    docs, dropped = read_documents(tmp_path / "bad", unreadable)
    assert [d["id"] for d in docs] == ["a"] and dropped == {"empty_text": 1, "malformed_json": 1}
    assert [u.place for u in unreadable] == [f"{folder / '00001.jsonl.gz'}:1"]
    with pytest.raises(FileNotFoundError, match="no Arrow shards"):
        list(iter_sequences(tmp_path))


def test_too_few_documents_fall_back_to_parent_heldout_then_in_sample(setup):
    root, _, tokenizer_dir, _ = setup
    one = root / "one"
    with JsonlWriter(str(one / "documents")) as writer:
        writer.write(Document(text=EN[5] * 4, id="only", metadata={"language": "en"}), rank=0)
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.0, synthetic_qa=False, heldout_fraction=0.1)
    parent = root / "parent_heldout.jsonl"
    parent.write_text(json.dumps({"id": "p1", "text": EN[7], "language": "en"}) + "\n")

    s = run_tokenize(cfg, one, tokenizer_dir, root / "tok-fallback", fallback_heldout=parent)["summary"]
    assert s["heldout_rule"] == "parent_heldout" and s["docs_out"] == 1
    held = [json.loads(line) for line in (root / "tok-fallback" / "heldout" / "domain.jsonl").read_text().splitlines()]
    assert [r["text"] for r in held] == [EN[7]]

    s = run_tokenize(cfg, one, tokenizer_dir, root / "tok-alone")["summary"]
    assert s["heldout_rule"] == "in_sample" and s["docs_out"] == 1 and "rule in_sample" in s["log_line"]
    held = [json.loads(line) for line in (root / "tok-alone" / "heldout" / "domain.jsonl").read_text().splitlines()]
    assert [r["text"] for r in held] == [EN[5] * 4]


@pytest.mark.parametrize("bos_token", [None, "<s>"], ids=["no-bos", "llama-bos"])
def test_special_strings_stay_text_and_bos_follows_the_tokenizer(tmp_path, bos_token):
    # Crawled text quoting the separator / BOS strings: they must be packed as text, never as control tokens.
    texts = [
        f"{EN[i]} A forum post quoted <|endoftext|> and <s> here, {i} times." if i % 2 else EN[i] for i in range(12)
    ]
    tokenizer_dir = build_tiny_llama(tmp_path / "tok", EN, vocab_size=300, seq_len=32, bos_token=bos_token)
    with JsonlWriter(str(tmp_path / "curated" / "documents")) as writer:
        for i, text in enumerate(texts):
            writer.write(Document(text=text, id=f"q{i}", metadata={}), rank=0)
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.0, synthetic_qa=False, heldout_fraction=0.0)
    s = run_tokenize(cfg, tmp_path / "curated", tokenizer_dir, tmp_path / "tokens")["summary"]

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    sep, bos = tok.convert_tokens_to_ids("<|endoftext|>"), tok.bos_token_id
    assert tok.backend_tokenizer.encode(texts[1], add_special_tokens=False).ids.count(sep) == 1  # the trap
    recorded = json.loads((tmp_path / "tokens" / "mix.json").read_text())["special_tokens"]
    assert recorded["adds_bos"] is (bos_token is not None) and recorded["separator_id"] == s["separator_id"] == sep
    assert recorded["bos_per_document"] is (bos_token is not None) and recorded["bos_id"] == bos

    stream = [t for seq in iter_sequences(tmp_path / "tokens") for t in seq]
    pieces = _pieces(tmp_path / "tokens", sep)
    assert pieces and s["docs_by_source"]["domain"] == len(texts)
    for piece in pieces:  # every piece between separators is one whole document, literal strings included
        if bos_token:
            assert piece[0] == bos and bos not in piece[1:]
            piece = piece[1:]
        assert tok.decode(list(piece)) in texts
    assert sum("<|endoftext|>" in tok.decode(list(p)) for p in pieces) >= 3
    assert (stream[0] == bos) is (bos_token is not None)

    # Accounting: every token packed is either trained on or in the reported tail, per source and in total.
    overhead = 2 if bos_token else 1
    packed = sum(len(tok(t, add_special_tokens=False, split_special_tokens=True)["input_ids"]) + overhead
                 for t in texts)  # fmt: skip
    assert s["tokens_packed"] == packed == s["train_tokens"] + s["tokens_dropped_remainder"]
    assert sum(s["tokens_by_source"].values()) == s["train_tokens"] == len(stream)
    assert sum(s["remainder_by_source"].values()) == s["tokens_dropped_remainder"] < 32
    assert s["remainder_by_source"]["domain"] == packed - s["tokens_by_source"]["domain"]


def test_fractional_synthetic_copies_sample_a_share_of_the_documents(setup):
    root, docs, tokenizer_dir, kg = setup
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.0, epochs_of_synthetic=1.5)
    s = run_tokenize(cfg, docs, tokenizer_dir, root / "s15", knowledge_graph=kg)["summary"]
    whole, part = qa_documents(_facts(), cfg.seed), qa_documents(_facts(), cfg.seed + 1)
    assert len(part) > len(_facts())  # several documents per fact: the fraction is of these, not of the facts
    assert s["docs_by_source"]["synthetic_qa"] == len(whole) + round(0.5 * len(part))
