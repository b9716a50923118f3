"""The demo's website: articles about a fictional, dated knowledge graph, plus noise for every filter.

Algorithm. A seeded RNG invents a world (companies, towns, people, products, landmarks, prizes, sports
cups and teams: names built from syllables, so no pretrained model knows them) and draws ``n_facts``
dated 2026 facts over eight relation kinds, spread so that every answer type has at least four facts.
Every name (subject or answer) is used by one fact only, so each question has exactly one answer and each
type has at least four distinct answers (the probe needs three distractors of the answer's type). Each
fact gets training questions and one probe question worded differently from both the questions and the
article sentences (checked by the tests: it never occurs in any page).

Each fact is written up three times, in three different paraphrases, in three different English
articles (each article covers 2-4 facts, padded with relation-specific context sentences so it reads as
news and passes Gopher quality); ``korean_share`` of the facts get two Korean write-ups (the first two
Korean articles double as the charset traps: EUC-KR named only in <meta>, and a lying header). Around the
articles sits the noise a real crawl meets: duplicates, near-duplicates, boilerplate-only pages, spam,
other languages, empty and non-HTML responses, lying or missing charsets, a slow page, a dead link, an
external link, a robots.txt-disallowed page and a sitemap. ``DemoSite.noise`` lists which path is which,
so a report can check that each was dropped for the right reason.

Trade-offs: templated prose is less varied than real news (fine for teaching a handful of facts, and
the filler is drawn per article so real articles are never near-duplicates of each other); everything
lives in memory (the whole site is ~0.2 MB) and is served by the standard library's threading server,
which is plenty for one crawler on localhost.
"""

from __future__ import annotations

import html
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.knowledge_graph import Fact, save_facts

logger = logging.getLogger(__name__)

SITE_NAME = "The Meridian Courier"
EXTERNAL_URL = "http://example.invalid/x"
# robots.txt and sitemap.xml need absolute URLs, known only once a port is bound: serve() substitutes it.
BASE_PLACEHOLDER = "__SITE_ROOT__"
HTML_UTF8 = "text/html; charset=utf-8"
_EPOCH = datetime(2026, 1, 2, 8, 0, tzinfo=timezone.utc)


class DemoSiteConfig(BaseModel):
    """When enabled, the run serves a generated website on 127.0.0.1 and crawls it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    seed: int = 7
    n_facts: int = Field(60, ge=5)
    korean_share: float = Field(0.3, ge=0, le=1, description="share of facts also written up in Korean")
    port: int = Field(0, ge=0, le=65535, description="0: any free port")
    slow_delay_s: float = Field(3.0, ge=0, description="how long the slow page takes to answer")
    context_sentences: int = Field(
        3, ge=1, le=4, description="filler sentences around each fact in English articles (fewer: shorter pages)"
    )


@dataclass
class Page:
    body: bytes
    content_type: str = HTML_UTF8
    status: int = 200
    delay_s: float = 0.0  # > 0 marks the slow page; serve() sleeps slow_delay_s for it
    last_modified: datetime = _EPOCH
    charset: str | None = "utf-8"  # what the bytes really are (Content-Type may lie); None: binary

    def text(self) -> str:
        return self.body.decode(self.charset or "latin-1")


@dataclass
class DemoSite:
    facts: list[Fact]
    pages: dict[str, Page]
    noise: dict[str, list[str]]
    article_paths: dict[str, list[str]]
    article_facts: dict[str, list[str]] = field(default_factory=dict)  # article path -> fact ids

    def write_knowledge_graph(self, path: Path) -> None:
        save_facts(self.facts, Path(path))


# ---------------------------------------------------------------------------------------------- world
_START = ["Or", "Lu", "Ve", "Qui", "Ta", "Ka", "Bre", "Zan", "Mi", "Sel", "Dra", "Fen", "Ho", "Ix", "Jor", "Ny",
          "Pa", "Ru", "Sto", "Tho", "Ul", "Wen", "Yar", "Cor", "El", "Gri", "Ma", "Nor", "Tes", "Va"]
_MID = ["ra", "me", "li", "no", "va", "te", "si", "ga", "do", "lu", "ri", "", "", ""]
_END = ["vine", "tric", "mora", "tessa", "lix", "ander", "oth", "ley", "wick", "ven", "sk", "dor", "nia",
        "ris", "mont", "quay", "holt", "rune", "bel", "tan"]
_FIRST = ["Idris", "Maren", "Tobin", "Selka", "Oren", "Liesl", "Cassio", "Yuna", "Dario", "Fenna", "Halvard",
          "Ines", "Joaquin", "Kaia", "Lorcan", "Mireth", "Nadim", "Odile", "Petra", "Rasmus", "Saoirse",
          "Teodor", "Ulla", "Vesna", "Wendel", "Ximena", "Yorick", "Anouk", "Bram", "Corin", "Elske", "Tamsin"]
_KIND_WORDS = {
    "company": ["Systems", "Labs", "Dynamics", "Works", "Analytics", "Robotics", "Foods", "Energy",
                "Logistics", "Biotech", "Materials", "Networks"],
    "landmark": ["Bridge", "Library", "Stadium", "Observatory", "Museum", "Concert Hall", "Tower", "Aquarium",
                 "Botanical Garden", "Ferry Terminal"],
    "award": ["Prize", "Medal", "Award"],
    "cup": ["Cup", "Trophy", "Shield"],
    "team": ["Falcons", "Rovers", "Comets", "Harriers", "Wolves", "Mariners", "Ravens", "Otters"],
    "product": ["X4", "Pro 2", "Mini", "S7", "Air", "One", "Max 3", "Go"],
}
_REPORTERS = ["Hanne Voss", "Teo Marchetti", "Amara Quill", "Jonas Brevik", "Lina Sorel", "Kofi Mensah-Dale"]

# Relation kinds: (subject kind, answer type).
RELATIONS = {
    "acquired_by": ("company", "company"),
    "launched_by": ("product", "company"),
    "ceo": ("company", "person"),
    "mayor": ("town", "person"),
    "opened_in": ("landmark", "town"),
    "headquarters": ("company", "town"),
    "award_won": ("person", "award"),
    "cup_winner": ("cup", "team"),
}
_TYPE_ORDER = ["company", "person", "town", "award", "team"]

# Per relation: statement, 3 article paraphrases (one per write-up), training questions, the probe,
# a headline and context sentences. {s} subject, {o} answer, {d} the date. _KO: two Korean paraphrases.
_EN = {
    "acquired_by": dict(
        statement="{o} acquired {s} on {d}.",
        para=["{o} completed its acquisition of {s} on {d}, bringing the smaller firm's engineers under one roof.",
              "On {d}, {s} agreed to be bought by {o} in a deal whose terms were not disclosed.",
              "The purchase of {s} by {o}, sealed on {d}, ended months of speculation about the firm's future."],
        q=["Who acquired {s}?", "Which company bought {s} in 2026?", "What company took over {s}?"],
        probe="Which firm now owns {s}?",
        head="{o} buys {s}",
        ctx=["Staff at {s} were told that no jobs would be cut during the first year.",
             "Analysts had expected a deal of this kind, given how closely the two firms already worked together.",
             "{o} said the purchase would help it reach customers it could not serve before.",
             "Shares in rival firms moved little on the news.",
             "The founders of {s} will stay on as advisers for at least twelve months."]),
    "launched_by": dict(
        statement="{o} launched the {s} on {d}.",
        para=["On {d}, {o} unveiled the {s} at a crowded press event.",
              "The {s}, released by {o} on {d}, went on sale in shops the same week.",
              "{o} began shipping the {s} on {d}, after two years of development."],
        q=["Which company launched the {s}?", "Who makes the {s}?", "Which company released the {s} in 2026?"],
        probe="The {s} is a product of which manufacturer?",
        head="{o} unveils the {s}",
        ctx=["Early reviews praised the battery life but found the price rather high.",
             "The company said demand in the first days was stronger than it had planned for.",
             "A cheaper model is expected to follow later in the year.",
             "Retailers reported queues outside several stores on the first morning.",
             "Engineers said most of the parts are made within a day's drive of the factory."]),
    "ceo": dict(
        statement="{s} appointed {o} as chief executive on {d}.",
        para=["On {d}, the board of {s} named {o} its new chief executive.",
              "{o} took over as chief executive of {s} on {d}, replacing the interim leadership.",
              "Since {d}, {s} has been run by {o}, who was appointed chief executive that day."],
        q=["Who is the chief executive of {s}?", "Who was appointed CEO of {s}?",
           "Who became the new chief executive of {s} in 2026?"],
        probe="Which person leads {s} as its top executive?",
        head="{s} names a new chief executive",
        ctx=["The appointment follows a long search that included several outside candidates.",
             "Colleagues describe the new leader as calm, careful and hard to rattle.",
             "Investors welcomed the decision, which they said would bring stability.",
             "The company plans to publish a new strategy before the end of the year.",
             "Employees were told about the change at a meeting that morning."]),
    "mayor": dict(
        statement="{o} was elected mayor of {s} on {d}.",
        para=["Voters in {s} elected {o} as mayor on {d}.",
              "On {d}, {o} won the mayoral election in {s} by a clear margin.",
              "{s} has a new mayor: {o}, who was elected on {d}."],
        q=["Who was elected mayor of {s}?", "Who is the mayor of {s}?",
           "Who won the 2026 mayoral election in {s}?"],
        probe="Which politician now heads the town government of {s}?",
        head="{s} chooses a new mayor",
        ctx=["Turnout was higher than at the previous election, according to the town clerk.",
             "The campaign focused on housing, bus services and the state of local roads.",
             "Supporters gathered in the market square to celebrate the result.",
             "The new council will meet for the first time next month.",
             "Local business owners said they hoped for lower fees and faster permits."]),
    "opened_in": dict(
        statement="The {s} opened in {o} on {d}.",
        para=["On {d}, the {s} opened to the public in {o}.",
              "Residents of {o} celebrated the opening of the {s} on {d}.",
              "The new {s} in {o} welcomed its first visitors on {d}."],
        q=["Where did the {s} open?", "In which town was the {s} opened?", "Which town opened the {s} in 2026?"],
        probe="In what town is the {s} located?",
        head="The {s} opens its doors",
        ctx=["Construction took almost three years and ran slightly over budget.",
             "Hundreds of people came to the ceremony despite the cold weather.",
             "Local schools have already booked visits for the coming months.",
             "The architects said they wanted a building that people would enjoy using every day.",
             "Entry will be free for residents during the first season."]),
    "headquarters": dict(
        statement="{s} moved its headquarters to {o} on {d}.",
        para=["{s} moved its headquarters to {o} on {d}, leaving the offices it had used for a decade.",
              "On {d}, {s} opened its new head office in {o}.",
              "The relocation of {s} to {o}, completed on {d}, brought hundreds of jobs to the town."],
        q=["Where did {s} move its headquarters?", "Which town is the new home of the {s} head office?",
           "To which town did {s} relocate in 2026?"],
        probe="In which town is {s} based today?",
        head="{s} moves its head office",
        ctx=["The company said the new building uses far less energy than the old one.",
             "Town officials had offered help with transport links and housing for staff.",
             "Most employees chose to move with the company, a spokesperson said.",
             "The old offices will be sold or turned into flats.",
             "Local cafes and shops expect more trade now that the firm has arrived."]),
    "award_won": dict(
        statement="{s} won the {o} on {d}.",
        para=["{s} won the {o} on {d}, for work that judges called bold and practical.",
              "On {d}, the jury of the {o} announced that this year's winner was {s}.",
              "The {o}, awarded on {d}, went to {s} after a long public shortlist."],
        q=["Which prize did {s} win?", "What award did {s} receive in 2026?", "Which honour was given to {s}?"],
        probe="{s} was honoured with which distinction?",
        head="{s} takes the {o}",
        ctx=["The winner thanked a small team of colleagues in a short speech.",
             "Previous winners include engineers, writers and designers from across the region.",
             "The prize comes with a grant that must be spent on new work.",
             "The ceremony was held in a packed hall and broadcast on local radio.",
             "Judges said the decision was unanimous this year."]),
    "cup_winner": dict(
        statement="The {o} won the 2026 {s} on {d}.",
        para=["The {o} won the 2026 {s} on {d} after a tense final.",
              "On {d}, the {o} lifted the {s} in front of a full stadium.",
              "The 2026 {s} went to the {o}, who won the final on {d}."],
        q=["Which team won the 2026 {s}?", "Who won the {s} in 2026?", "Which club lifted the {s} trophy in 2026?"],
        probe="Who are the 2026 champions of the {s}?",
        head="The {o} win the {s}",
        ctx=["The deciding goal came late in the second half.",
             "Thousands of fans lined the streets for the parade the next day.",
             "The coach said the squad had trained harder than ever this season.",
             "It was the club's first major trophy in more than a decade.",
             "The losing side was praised for a brave and open performance."]),
}
_KO = {
    "acquired_by": ["{o}{i} {d}에 {s}{eul} 인수했다고 발표했다. 회사 측은 인수 금액을 공개하지 않았다.",
                    "{s}{eun} {d}부터 {o}의 자회사가 되었다. 이번 인수로 두 회사의 기술 인력이 한 곳에 모였다."],
    "launched_by": ["{o}{eun} {d}에 신제품 {s}{eul} 출시했다.",
                    "{s}{eun} {o}{i} {d}에 내놓은 제품으로, 출시 첫 주에 매장에서 빠르게 팔렸다."],
    "ceo": ["{s}의 이사회는 {d}에 {o}{eul} 새 최고경영자로 임명했다.",
            "{o}{eun} {d}부터 {s}의 최고경영자를 맡고 있다. 새 대표는 직원들에게 안정을 강조했다."],
    "mayor": ["{s} 주민들은 {d}에 치러진 선거에서 {o}{eul} 시장으로 뽑았다.",
              "{o}{eun} {d}에 {s}의 새 시장으로 당선되었다. 투표율은 지난 선거보다 높았다."],
    "opened_in": ["{s}{i} {d}에 {o}에서 문을 열었다.",
                  "{o} 주민들은 {d}에 {s}의 개관을 축하했다. 개관식에는 많은 시민이 모였다."],
    "headquarters": ["{s}{eun} {d}에 본사를 {o}{ro} 옮겼다.",
                     "{d}부터 {s}의 본사는 {o}에 있다. 회사는 새 사무실에서 더 많은 직원을 채용할 계획이다."],
    "award_won": ["{s}{eun} {d}에 {o}{eul} 받았다.",
                  "{d}에 열린 시상식에서 {o}의 올해 수상자로 {s}{i} 발표되었다."],
    "cup_winner": ["{o}{eun} {d}에 열린 결승전에서 승리해 2026년 {s}에서 우승했다.",
                   "2026년 {s}의 우승은 {o}에게 돌아갔다. 결승전은 {d}에 열렸다."],
}
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
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


class _Names:
    """Unique invented names: one syllable root is never reused, so no two entities share a name."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()
        self.kind_i: dict[str, int] = {}
        # People get distinct first names while they last: two "Mireth ..." answers are easy to confuse.
        self.first_names = rng.sample(_FIRST, len(_FIRST))

    def root(self) -> str:
        for _ in range(10_000):
            name = self.rng.choice(_START) + self.rng.choice(_MID) + self.rng.choice(_END)
            if name not in self.used and len(name) >= 5:
                self.used.add(name)
                return name
        raise RuntimeError("ran out of invented names")

    def make(self, kind: str) -> str:
        if kind == "person":
            first = self.first_names.pop() if self.first_names else self.rng.choice(_FIRST)
            return f"{first} {self.root()}"
        if kind == "town":
            return self.root()
        if kind == "team":
            return f"{self.root()} {self.rng.choice(_KIND_WORDS['team'])}"
        # Rotate the kind word so names of one kind are spread over all of its suffixes.
        words = _KIND_WORDS[kind]
        i = self.kind_i.get(kind, self.rng.randrange(len(words)))
        self.kind_i[kind] = i + 1
        return f"{self.root()} {words[i % len(words)]}"


def _fmt(d: date, style: int) -> str:
    if style == 0:
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"
    if style == 1:
        return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"
    return f"{d.strftime('%A')} {d.day} {_MONTHS[d.month - 1]}"


def _has_batchim(word: str) -> bool:
    """Whether a name ends in a consonant sound, which picks the Korean particle (이/가, 은/는, ...)."""
    last = word.strip()[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 != 0
    if last.isdigit():
        return last in "013678"  # 영, 일, 삼, 육, 칠, 팔 end in a consonant
    # Loanwords: final l/m/n/ng keep a consonant; other finals take an added vowel (Labs -> 랩스).
    return last.lower() in "lmn" or word.lower().endswith("ng")


_PARTICLES = {"i": ("이", "가"), "eun": ("은", "는"), "eul": ("을", "를"), "ro": ("으로", "로")}


def _ko(template: str, s: str, o: str, d: str) -> str:
    """Fill a Korean template; ``{s}{eul}`` becomes the name plus the particle its final sound takes."""
    for key, word in (("s", s), ("o", o)):
        for tag, (after_consonant, after_vowel) in _PARTICLES.items():
            if "{" + key + "}{" + tag + "}" not in template:
                continue
            particle = after_consonant if _has_batchim(word) else after_vowel
            if tag == "ro" and word.lower().endswith("l"):
                particle = "로"  # ㄹ takes 로, not 으로
            template = template.replace("{" + key + "}{" + tag + "}", word + particle)
    return template.format(s=s, o=o, d=d)


def _relation_plan(n_facts: int) -> list[str]:
    """Which relation each fact gets. Round-robin over relations spreads facts evenly (so articles can
    mix relations); when that would leave an answer type with < 4 facts, round-robin over types instead,
    using only as many types as keep >= 4 facts (hence >= 4 distinct answers) each."""
    relations = list(RELATIONS)
    if n_facts // len(relations) >= 4:
        return [relations[i % len(relations)] for i in range(n_facts)]
    types = _TYPE_ORDER[: max(1, min(len(_TYPE_ORDER), n_facts // 4))]
    by_type = {t: [r for r, (_, ot) in RELATIONS.items() if ot == t] for t in types}
    seen = dict.fromkeys(types, 0)
    plan = []
    for i in range(n_facts):
        t = types[i % len(types)]
        plan.append(by_type[t][seen[t] % len(by_type[t])])
        seen[t] += 1
    return plan


def _facts(cfg: DemoSiteConfig, rng: random.Random, names: _Names) -> list[Fact]:
    facts = []
    for i, relation in enumerate(_relation_plan(cfg.n_facts)):
        otype = RELATIONS[relation][1]
        obj = names.make(otype)  # every answer is used once: a cleaner world and more distractors
        subj = names.make(RELATIONS[relation][0])  # a fresh subject: one answer per subject + relation
        day = date(2026, 1, 5) + timedelta(days=rng.randrange(320))
        en = _EN[relation]
        fill = {"s": subj, "o": obj, "d": _fmt(day, 0)}
        facts.append(Fact(
            id=f"f{i:03d}", subject=subj, relation=relation, object=obj, object_type=otype,
            date=day.isoformat(), statement=en["statement"].format(**fill),
            questions=[q.format(**fill) for q in en["q"]], probe_question=en["probe"].format(**fill),
        ))
    return facts


# ---------------------------------------------------------------------------------------------- pages
_NAV = ('<header class="site-header"><a class="logo" href="/">{site}</a><nav><ul>'
        '<li><a href="/">Home</a></li><li><a href="/news/">News</a></li><li><a href="/ko/">한국어</a></li>'
        '<li><a href="/world/">World</a></li><li><a href="/misc/">More</a></li>'
        '<li><a href="/login.html">Sign in</a></li></ul></nav></header>')
_FOOT = ('<footer class="site-footer"><p>&copy; 2026 {site}. All rights reserved.</p><p>'
         '<a href="/cookies.html">Cookie settings</a> | <a href="/tags/">Tags</a> | '
         '<a href="/sitemap.xml">Sitemap</a> | <a href="' + EXTERNAL_URL + '">Partner site</a></p></footer>')


def _html(title: str, main: str, lang: str = "en", charset: str = "utf-8") -> str:
    meta = (f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'
            if charset != "utf-8" else '<meta charset="utf-8">')
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head>{meta}<title>{html.escape(title)} | {SITE_NAME}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"></head>\n<body>'
            f'{_NAV.format(site=SITE_NAME)}\n<main>{main}</main>\n{_FOOT.format(site=SITE_NAME)}\n</body></html>\n')


def _article(title: str, byline: str, paras: list[str], related: list[tuple[str, str]]) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paras)
    links = "".join(f'<li><a href="{h}">{html.escape(t)}</a></li>' for h, t in related)
    return (f'<article><h1>{html.escape(title)}</h1><p class="byline">{html.escape(byline)}</p>\n{body}</article>'
            f'<aside class="related"><h2>Related stories</h2><ul>{links}</ul></aside>')


def _index(title: str, links: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="{h}">{html.escape(t)}</a></li>' for h, t in links)
    return _html(title, f'<section><h1>{html.escape(title)}</h1><ul class="story-list">{items}</ul></section>')


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(filter(None, out.split("-")))


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
                en, day = _EN[f.relation], date.fromisoformat(f.date)
                fill = {"s": f.subject, "o": f.object, "d": _fmt(day, r)}
                ctx = _context(en["ctx"], used, n_ctx, rng)
                paras.append(" ".join([en["para"][r].format(**fill)] + [c.format(**fill) for c in ctx]))
            paras.append(rng.choice(_EN_OUTRO))
            first = group[0]
            title = _EN[first.relation]["head"].format(s=first.subject, o=first.object)
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
                paras.append(" ".join([_ko(_KO[f.relation][r], f.subject, f.object, d)] + ctx))
            paras.append(_KO_OUTRO)
            title = f"{group[0].subject} 관련 소식 외 {len(group) - 1}건"
            out.append((title, paras, group, max(date.fromisoformat(f.date) for f in group)))
    return out


_OTHER_LANG = {
    "de": ("Stadtrat beschließt Sanierung der Markthalle",
           "Der Gemeinderat hat am Dienstagabend beschlossen, die alte Markthalle im Stadtzentrum zu renovieren. "
           "Die Arbeiten sollen im Frühjahr beginnen und etwa zwei Jahre dauern. Nach Angaben der Verwaltung wird "
           "das Gebäude danach wieder für Wochenmärkte, Konzerte und kleinere Ausstellungen genutzt. Viele "
           "Anwohner begrüßten die Entscheidung, weil die Halle seit Jahren leer steht und langsam verfällt. "
           "Kritiker bemängeln jedoch die hohen Kosten, die zum Teil aus Rücklagen finanziert werden müssen. "
           "Eine öffentliche Informationsveranstaltung ist für den kommenden Monat geplant."),
    "fr": ("La bibliothèque municipale rouvre ses portes",
           "La bibliothèque municipale a rouvert ses portes samedi matin après plusieurs mois de travaux. Les "
           "lecteurs ont découvert une salle de lecture plus lumineuse, un espace réservé aux enfants et de "
           "nouveaux ordinateurs en libre accès. Selon la directrice, la fréquentation avait beaucoup baissé ces "
           "dernières années, et la rénovation doit permettre d'attirer un public plus jeune. Des ateliers "
           "d'écriture et des rencontres avec des auteurs seront organisés chaque mois. Les horaires d'ouverture "
           "ont également été élargis : la bibliothèque sera désormais ouverte le dimanche après-midi."),
    "es": ("El ayuntamiento amplía la red de carriles bici",
           "El ayuntamiento presentó ayer un plan para ampliar la red de carriles para bicicletas en los barrios "
           "del norte de la ciudad. El proyecto prevé construir más de quince kilómetros de nuevos carriles "
           "durante los próximos tres años, así como aparcamientos seguros cerca de las estaciones de tren. "
           "Según la concejala de movilidad, el objetivo es reducir el tráfico en el centro y mejorar la calidad "
           "del aire. Las asociaciones de vecinos han pedido que se tengan en cuenta sus propuestas antes de "
           "aprobar el diseño definitivo."),
    "ja": ("放課後の学習支援教室、全小学校で開設へ",
           "市の教育委員会は、来年度から全ての小学校で放課後の学習支援教室を開くと発表した。教室は週に三回開かれ、"
           "地域のボランティアや退職した教員が子どもたちの宿題を手伝う。委員会によると、共働きの家庭が増えたことで、"
           "放課後に子どもを見守る場所を求める声が高まっていたという。参加は無料で、希望する家庭は四月末までに"
           "学校を通じて申し込むことができる。保護者からは歓迎の声が上がる一方、ボランティアの数が十分に集まるかを"
           "心配する意見もある。委員会は今後、説明会を開いて協力者を募る予定だ。"),
}
_SPAM = {
    "/deals/cheap-watches.html": ("Cheap watches best cheap watches",
                                  ["cheap watches best cheap watches buy cheap watches online cheap watches "
                                   "discount cheap watches sale cheap watches"] * 12),
    "/deals/win-now.html": ("WIN NOW", ["CLICK HERE TO WIN A FREE PRIZE NOW!!!"] * 40),
    "/deals/symbols.html": ("★★★", ["★ ★ ★ ◆ ◆ → → → ### $$$ %%% @@@ ~~~ ^^^ ||| +++"] * 25),
}
_NEAR_DUP_SWAPS = [("said", "noted"), ("new", "fresh"), ("week", "period"), ("local", "regional")]


def _near_duplicate(page_html: str, ref: str) -> str:
    for old, new in _NEAR_DUP_SWAPS:
        page_html = page_html.replace(f" {old} ", f" {new} ", 1)
    footer = (f"<p>This story was shared through our partner newsletter. Reference {ref}, "
              "campaign spring, source partner feed.</p>")
    return page_html.replace("</article>", footer + "</article>", 1)


def build_site(cfg: DemoSiteConfig) -> DemoSite:
    """The whole site, deterministic in ``cfg.seed`` (no set iteration, no ``hash()``)."""
    rng = random.Random(cfg.seed)
    names = _Names(rng)
    facts = _facts(cfg, rng, names)
    pages: dict[str, Page] = {}
    noise: dict[str, list[str]] = {}
    paths: dict[str, list[str]] = {"en": [], "ko": []}
    article_facts: dict[str, list[str]] = {}

    def stamp(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, 8, 0, tzinfo=timezone.utc)

    en_arts = _english_articles(facts, rng, cfg.context_sentences)
    en_paths = [f"/news/{_slug(t)}-{i:03d}.html" for i, (t, *_rest) in enumerate(en_arts)]
    for i, (title, paras, group, newest) in enumerate(en_arts):
        related = [(en_paths[j], en_arts[j][0]) for j in ((i + 1) % len(en_arts), (i + 7) % len(en_arts))]
        byline = f"By {rng.choice(_REPORTERS)} | {_fmt(newest, 0)}"
        pages[en_paths[i]] = Page(_html(title, _article(title, byline, paras, related)).encode(),
                                  last_modified=stamp(newest))
        article_facts[en_paths[i]] = [f.id for f in group]
    paths["en"] = en_paths

    n_ko = round(len(facts) * cfg.korean_share)
    ko_arts = _korean_articles(facts[:n_ko], rng) if n_ko >= 2 else []
    ko_paths = [f"/ko/news-{i:03d}.html" for i in range(len(ko_arts))]
    for i, (title, paras, group, newest) in enumerate(ko_arts):
        byline = f"메리디언 쿠리어 | {newest.year}년 {newest.month}월 {newest.day}일"
        main = _article(title, byline, paras, [])
        pages[ko_paths[i]] = Page(_html(title, main, lang="ko").encode(), last_modified=stamp(newest))
        article_facts[ko_paths[i]] = [f.id for f in group]
        if i == 0:  # EUC-KR bytes; the charset is only in <meta>, Content-Type names none
            text = _html(title, main, lang="ko", charset="euc-kr")
            bad = sorted({c for c in text if "가" <= c <= "힣" and len(c.encode("euc_kr")) != 2})
            if bad:
                raise ValueError(f"Korean template uses syllables outside EUC-KR (KS X 1001): {bad}")
            pages[ko_paths[i]] = Page(text.encode("euc_kr"), "text/html", last_modified=stamp(newest),
                                      charset="euc-kr")
            noise["charset_meta_only"] = [ko_paths[i]]
        elif i == 1:  # UTF-8 bytes, but the header claims Latin-1
            pages[ko_paths[i]].content_type = "text/html; charset=iso-8859-1"
            noise["charset_wrong_header"] = [ko_paths[i]]
    paths["ko"] = ko_paths

    # --- noise -------------------------------------------------------------------------------------
    def add(kind: str, path: str, page: Page) -> None:
        pages[path] = page
        noise.setdefault(kind, []).append(path)

    for k in range(2):
        src = en_paths[k * 5]
        add("exact_duplicate", "/amp" + src, Page(pages[src].body, last_modified=pages[src].last_modified))
        near = _near_duplicate(pages[src].body.decode(), f"MC-2026-{rng.randrange(10_000, 99_999)}")
        add("near_duplicate", f"/partners/story-{k + 1}.html", Page(near.encode()))
    add("boilerplate", "/cookies.html", Page(_html("Cookie settings", (
        '<div class="cookie-banner"><h2>Cookie settings</h2><form><label><input type="checkbox" checked> '
        'Necessary</label><label><input type="checkbox"> Analytics</label><button>Accept all</button>'
        '<button>Reject</button></form></div>')).encode()))
    tags = ["business", "towns", "elections", "sport", "culture", "technology", "awards", "transport"]
    add("boilerplate", "/tags/", Page(_index("Tags", [(f"/tags/#{t}", t.title()) for t in tags]).encode()))
    add("boilerplate", "/login.html", Page(_html("Sign in", (
        '<div class="login"><h2>Sign in</h2><form method="post"><label>Email <input name="email"></label>'
        '<label>Password <input name="password" type="password"></label><button>Sign in</button></form>'
        '<a href="/login.html#reset">Forgot password?</a></div>')).encode()))
    for path, (title, lines) in _SPAM.items():
        main = f"<article><h1>{html.escape(title)}</h1>" + "".join(f"<p>{html.escape(ln)}</p>" for ln in lines)
        add("spam", path, Page(_html(title, main + "</article>").encode()))
    for lang, (title, text) in _OTHER_LANG.items():
        main = f"<article><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></article>"
        add("other_language", f"/world/{lang}.html", Page(_html(title, main, lang=lang).encode()))
    add("empty", "/empty.html", Page(b""))
    add("empty", "/blank.html", Page(b"<!DOCTYPE html>\n<html><head><title></title></head><body></body></html>\n"))
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
           b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    add("non_html", "/files/annual-report.pdf", Page(pdf, "application/pdf", charset=None))
    api = json.dumps({"site": SITE_NAME, "articles": len(en_paths) + len(ko_paths), "status": "ok"})
    add("non_html", "/api/status.json", Page(api.encode(), "application/json"))
    slow_main = ("<article><h1>Live: storm updates</h1><p>This live page collects reports on the storm that "
                 "crossed the coast overnight. It is refreshed every few minutes.</p></article>")
    add("slow", "/news/live-storm-updates.html", Page(_html("Live: storm updates", slow_main).encode(),
                                                      delay_s=cfg.slow_delay_s or 3.0))
    noise["broken_link"] = ["/news/archive-2025.html"]
    noise["external_link"] = [EXTERNAL_URL]
    private = ("<article><h1>Staff notes</h1><p>Internal staff notes: PRIVATE-MARKER-7731. The editorial "
               "meeting moves to Thursday and the coffee machine on the second floor is broken again.</p></article>")
    add("robots_disallowed", "/private/staff-notes.html", Page(_html("Staff notes", private).encode()))

    # --- sections, index, robots, sitemap -------------------------------------------------------------
    def title_of(path: str) -> str:
        return path.rsplit("/", 1)[-1] or path

    news = [(p, en_arts[i][0]) for i, p in enumerate(en_paths)]
    news += [(noise["slow"][0], "Live: storm updates"), (noise["broken_link"][0], "Archive 2025")]
    pages["/news/"] = Page(_index("News", news).encode())
    pages["/ko/"] = Page(_index("한국어 뉴스", [(p, ko_arts[i][0]) for i, p in enumerate(ko_paths)]).encode())
    pages["/world/"] = Page(_index("World", [(p, title_of(p)) for p in noise["other_language"]]).encode())
    misc_kinds = ["exact_duplicate", "near_duplicate", "boilerplate", "spam", "empty", "non_html",
                  "robots_disallowed"]
    misc = [(p, f"{k}: {title_of(p)}") for k in misc_kinds for p in noise[k]]
    pages["/misc/"] = Page(_index("More", misc + [(EXTERNAL_URL, "Partner site")]).encode())
    sections = [("/news/", "News"), ("/ko/", "Korean news"), ("/world/", "World"), ("/misc/", "More"),
                ("/sitemap.xml", "Sitemap")]
    pages["/"] = Page(_index(SITE_NAME, sections).encode())
    robots = f"User-agent: *\nDisallow: /private/\n\nSitemap: {BASE_PLACEHOLDER}/sitemap.xml\n"
    pages["/robots.txt"] = Page(robots.encode(), "text/plain; charset=utf-8")
    locs = [p for p in pages if p.endswith((".html", "/")) and not p.startswith("/private/")]
    urls = "".join(f"<url><loc>{BASE_PLACEHOLDER}{p}</loc><lastmod>{pages[p].last_modified.date()}</lastmod></url>\n"
                   for p in locs)
    sitemap = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
               f"{urls}</urlset>\n")
    pages["/sitemap.xml"] = Page(sitemap.encode(), "application/xml")
    return DemoSite(facts=facts, pages=pages, noise=noise, article_paths=paths, article_facts=article_facts)
