"""The demo site's articles: every fact written up three times in English, and some twice in Korean.

Each fact is written up three times, in three different paraphrases, in three different English articles
(each article covers 2-4 facts, padded with relation-specific context sentences so it reads as news and
passes Gopher quality); a share of the facts get two Korean write-ups. The first two Korean articles
double as charset traps: EUC-KR named only in ``<meta>``, and a header that lies (Latin-1 for UTF-8 bytes).

Trade-off: templated prose is less varied than real news, which is fine for teaching a handful of facts;
the filler is drawn per article, so real articles are never near-duplicates of each other.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timezone

from cpt_core.data.knowledge_graph import Fact
from cpt_core.demo.pages import Page, article_html, html_page, slug
from cpt_core.demo.world import EN_WORDING, KO_WORDING, fmt_date, ko_fill

_REPORTERS = ["Hanne Voss", "Teo Marchetti", "Amara Quill", "Jonas Brevik", "Lina Sorel", "Kofi Mensah-Dale"]
_EN_INTRO = ["Here is our round-up of the week's business and civic news from across the region.",
             "Several long-awaited decisions were announced this week, and our reporters followed each of them.",
             "It has been a busy few days for the towns and companies we cover.",
             "This report gathers the most important local stories of the past days.",
             "Readers have asked us to keep track of the changes in the region, so here is the latest."]
_EN_OUTRO = ["We will follow all of these stories and report again as soon as there is more to say.",
             "Readers with questions about any of these reports can write to the news desk.",
             "More details are expected in the coming weeks, and we will update this page when they arrive.",
             "As always, the full background to each story can be found in our archive.",
             "That is all for this edition, and thank you for reading the paper."]
_KO_CTX = ["이 소식은 지역 사회에서 큰 관심을 모았다.", "관계자들은 이번 일이 지역 경제에 좋은 영향을 줄 것으로 기대하고 있다.",
           "자세한 내용은 다음 달에 추가로 발표될 예정이다.", "전문가들은 앞으로의 변화를 주의 깊게 지켜봐야 한다고 말했다.",
           "현지 언론은 이 소식을 주요 기사로 보도했다.", "시민들의 반응은 대체로 긍정적이었다.",
           "일부에서는 걱정의 목소리도 나왔지만 큰 반대는 없었다.", "주민들은 새로운 변화가 생활에 도움이 되기를 바란다고 말했다."]
_KO_INTRO = "메리디언 쿠리어가 이번 주의 지역 소식을 정리했다. 여러 회사와 도시에서 중요한 발표가 이어졌다."
_KO_OUTRO = "본지는 앞으로도 이 소식들을 계속 전할 예정이다. 독자 여러분의 관심에 감사드린다."


def _groups(facts: list[Fact], rng: random.Random, size: int = 3) -> list[list[Fact]]:
    """Shuffle, then fill groups of `size` (a remainder of 1 joins the last group) greedily with facts of
    relations the group does not have yet: two facts of one relation in an article would repeat their
    template's wording, which Gopher's duplicated n-gram rule rightly punishes."""
    pending = facts[:]
    rng.shuffle(pending)
    sizes = [size] * (len(facts) // size) + ([len(facts) % size] if len(facts) % size else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [size + 1]
    left = Counter(f.relation for f in pending)
    groups = []
    for n in sizes:
        group: list[Fact] = []
        while len(group) < n:
            taken = {f.relation for f in group}
            # Take from the relation with most facts left (first in shuffled order on ties), so that the
            # last groups are not left with several facts of one relation.
            pick = max([f for f in pending if f.relation not in taken] or pending, key=lambda f: left[f.relation])
            left[pick.relation] -= 1
            pending.remove(pick)
            group.append(pick)
        groups.append(group)
    return groups


def _context(pool: list[str], used: set[str], k: int, rng: random.Random) -> list[str]:
    """k context sentences not yet used in this article (fewer if the pool runs dry)."""
    fresh = [c for c in pool if c not in used]
    picked = rng.sample(fresh, min(k, len(fresh)))
    used.update(picked)
    return picked


def _english_articles(
    facts: list[Fact], rng: random.Random, context_sentences: int = 3
) -> list[tuple[str, list[str], list[Fact], date]]:
    """(title, paragraphs, facts, newest date): write-up r of every fact uses paraphrase r, so the three
    write-ups of one fact always land in three different articles."""
    out = []
    for r in range(3):
        for group in _groups(facts, rng):
            n_ctx = context_sentences + (len(group) < 3)  # two-fact articles get one more, to stay long enough
            paras, used = [rng.choice(_EN_INTRO)], set()
            for f in group:
                en, day = EN_WORDING[f.relation], date.fromisoformat(f.date)
                fill = {"s": f.subject, "o": f.object, "d": fmt_date(day, r)}
                ctx = _context(en["ctx"], used, n_ctx, rng)
                paras.append(" ".join([en["para"][r].format(**fill)] + [c.format(**fill) for c in ctx]))
            paras.append(rng.choice(_EN_OUTRO))
            first = group[0]
            title = EN_WORDING[first.relation]["head"].format(s=first.subject, o=first.object)
            newest = max(date.fromisoformat(f.date) for f in group)
            out.append((title, paras, group, newest))
    return out


def _korean_articles(facts: list[Fact], rng: random.Random) -> list[tuple[str, list[str], list[Fact], date]]:
    out = []
    for r in range(2):
        for group in _groups(facts, rng):
            paras, used = [_KO_INTRO], set()
            for f in group:
                day = date.fromisoformat(f.date)
                d = f"{day.year}년 {day.month}월 {day.day}일"
                ctx = _context(_KO_CTX, used, 2, rng)
                paras.append(" ".join([ko_fill(KO_WORDING[f.relation][r], f.subject, f.object, d)] + ctx))
            paras.append(_KO_OUTRO)
            title = f"{group[0].subject} 관련 소식 외 {len(group) - 1}건"
            out.append((title, paras, group, max(date.fromisoformat(f.date) for f in group)))
    return out



def _stamp(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 8, 0, tzinfo=timezone.utc)


def add_english_articles(
    pages: dict[str, Page], article_facts: dict[str, list[str]], facts: list[Fact], rng: random.Random,
    context_sentences: int,
) -> list[tuple[str, str]]:
    """Write the English articles into ``pages`` (each links two others as related stories); returns
    ``[(path, title)]`` in article order."""
    arts = _english_articles(facts, rng, context_sentences)
    paths = [f"/news/{slug(t)}-{i:03d}.html" for i, (t, *_rest) in enumerate(arts)]
    for i, (title, paras, group, newest) in enumerate(arts):
        related = [(paths[j], arts[j][0]) for j in ((i + 1) % len(arts), (i + 7) % len(arts))]
        byline = f"By {rng.choice(_REPORTERS)} | {fmt_date(newest, 0)}"
        pages[paths[i]] = Page(html_page(title, article_html(title, byline, paras, related)).encode(),
                               last_modified=_stamp(newest))
        article_facts[paths[i]] = [f.id for f in group]
    return [(p, arts[i][0]) for i, p in enumerate(paths)]


def add_korean_articles(
    pages: dict[str, Page], article_facts: dict[str, list[str]], noise: dict[str, list[str]],
    facts: list[Fact], rng: random.Random,
) -> list[tuple[str, str]]:
    """Write the Korean articles about ``facts`` (none for fewer than two facts) into ``pages``, the first two
    as the charset traps listed in ``noise``; returns ``[(path, title)]``."""
    arts = _korean_articles(facts, rng) if len(facts) >= 2 else []
    paths = [f"/ko/news-{i:03d}.html" for i in range(len(arts))]
    for i, (title, paras, group, newest) in enumerate(arts):
        byline = f"메리디언 쿠리어 | {newest.year}년 {newest.month}월 {newest.day}일"
        main = article_html(title, byline, paras, [])
        pages[paths[i]] = Page(html_page(title, main, lang="ko").encode(), last_modified=_stamp(newest))
        article_facts[paths[i]] = [f.id for f in group]
        if i == 0:  # EUC-KR bytes; the charset is only in <meta>, Content-Type names none
            text = html_page(title, main, lang="ko", charset="euc-kr")
            bad = sorted({c for c in text if "가" <= c <= "힣" and len(c.encode("euc_kr")) != 2})
            if bad:
                raise ValueError(f"Korean template uses syllables outside EUC-KR (KS X 1001): {bad}")
            pages[paths[i]] = Page(text.encode("euc_kr"), "text/html", last_modified=_stamp(newest),
                                   charset="euc-kr")
            noise["charset_meta_only"] = [paths[i]]
        elif i == 1:  # UTF-8 bytes, but the header claims Latin-1
            pages[paths[i]].content_type = "text/html; charset=iso-8859-1"
            noise["charset_wrong_header"] = [paths[i]]
    return [(p, arts[i][0]) for i, p in enumerate(paths)]
