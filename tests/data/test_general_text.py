"""General text sources: built-ins are real, deterministic and different from each other; files and folders."""

import gzip
import json
import re

import pytest

from cpt_core.data.general_text import GeneralTextConfig, clean_markup, general_texts


@pytest.mark.parametrize("source", ["package-readmes", "stdlib-docstrings"])
def test_builtin_sources_are_real_capped_and_deterministic(source):
    docs = general_texts(GeneralTextConfig(source=source, max_chars=50_000))
    assert len(docs) >= 3
    total = sum(map(len, docs))
    assert 45_000 <= total <= 50_000
    assert docs == general_texts(GeneralTextConfig(source=source, max_chars=50_000))
    words = " ".join(docs).split()
    assert sum(w.lower() in {"the", "and", "of", "to", "a", "is"} for w in words) > 0.05 * len(words)  # English
    # A larger cap extends, not reshuffles, the same list.
    bigger = general_texts(GeneralTextConfig(source=source, max_chars=100_000))
    assert bigger[: len(docs) - 1] == docs[:-1]


def test_readmes_are_cleaned_and_long():
    docs = general_texts(GeneralTextConfig(source="package-readmes", max_chars=400_000))
    assert all(len(d) >= 500 for d in docs[:-1])  # the last one may be cut by the cap
    text = "\n".join(docs)
    assert "```" not in text and "[![" not in text and ".. image::" not in text and ".. code-block" not in text
    url_only = re.compile(r"^\s*<?https?://\S+>?\s*$")
    assert not any(url_only.match(line) for line in text.splitlines())


def test_readmes_leave_out_this_projects_own_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    paragraphs = (p.strip() for p in readme.split("\n\n"))
    ours = {p for p in paragraphs if len(p) > 80 and not p.startswith(("|", "`"))}
    docs = general_texts(GeneralTextConfig(source="package-readmes", max_chars=2_000_000))
    assert ours and not ours & {p.strip() for d in docs for p in d.split("\n\n")}


def test_the_two_builtin_sources_do_not_overlap():
    readmes = general_texts(GeneralTextConfig(source="package-readmes", max_chars=100_000))
    docstrings = general_texts(GeneralTextConfig(source="stdlib-docstrings", max_chars=100_000))
    para_a = {p.strip() for d in readmes for p in d.split("\n\n") if len(p.strip()) > 80}
    para_b = {p.strip() for d in docstrings for p in d.split("\n\n") if len(p.strip()) > 80}
    assert para_a and para_b and not para_a & para_b


def test_clean_markup_keeps_prose_and_drops_noise():
    md = """# Title

[![Build](https://img.shields.io/badge/x.svg)](https://ci)

Some *prose* with a [link](https://example.com) and `code`.

```python
import secret_code
```

| a | b |
|---|---|
| 1 | 2 |

https://example.com/only-a-url

Usage::

    indented_literal_block()

.. image:: logo.png
   :target: https://x

Final sentence.
"""
    out = clean_markup(md)
    assert "Title" in out and "Some *prose* with a link and code." in out and "Final sentence." in out
    assert "Usage:" in out
    for noise in ("secret_code", "shields", "| a |", "only-a-url", "indented_literal_block", "logo.png", ":target:"):
        assert noise not in out, noise


def test_paths_txt_jsonl_and_folder(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("First document\nstill first.\n\n\nSecond document.\n")
    with gzip.open(tmp_path / "corpus" / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "Third document."}) + "\n\n")
    (tmp_path / "corpus" / "c.jsonl").write_text(json.dumps({"text": "Fourth.", "id": 4}) + "\n")
    (tmp_path / "corpus" / "ignored.md").write_text("not read")
    docs = general_texts(GeneralTextConfig(source=str(tmp_path / "corpus"), max_chars=1000))
    assert docs == ["First document\nstill first.", "Second document.", "Third document.", "Fourth."]
    assert general_texts(GeneralTextConfig(source=str(tmp_path / "corpus" / "c.jsonl"), max_chars=1000)) == [
        "Fourth."
    ]


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-source.*built-in sources"):
        general_texts(GeneralTextConfig(source="no-such-source"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: row has no string field 'text'"):
        general_texts(GeneralTextConfig(source=str(bad)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no"):
        general_texts(GeneralTextConfig(source=str(tmp_path / "empty")))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"x.csv: expected \.txt"):
        general_texts(GeneralTextConfig(source=str(tmp_path / "x.csv")))
