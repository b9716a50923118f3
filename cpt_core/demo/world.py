"""The demo's invented world: names no pretrained model knows, and the dated 2026 facts about them.

Algorithm. A seeded RNG invents companies, towns, people, products, landmarks, prizes, sports cups and
teams (names built from syllables) and draws ``n_facts`` dated 2026 facts over eight relation kinds, spread
so that every answer type has at least four facts. Every name (subject or answer) is used by one fact only,
so each question has exactly one answer and each type has at least four distinct answers (the probe needs
three distractors of the answer's type). Each fact gets training questions and one probe question worded
differently from both the questions and the article sentences (checked by the tests: it never occurs in
any page).

``EN_WORDING`` and ``KO_WORDING`` hold, per relation, the statement, the article paraphrases, the questions,
the probe, a headline and context sentences; ``articles`` writes the pages from them.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from cpt_core.data.knowledge_graph import Fact

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
# a headline and context sentences. {s} subject, {o} answer, {d} the date. KO_WORDING: two Korean paraphrases.
EN_WORDING = {
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
KO_WORDING = {
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
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]



class Names:
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


def fmt_date(d: date, style: int) -> str:
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


def ko_fill(template: str, s: str, o: str, d: str) -> str:
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


def make_facts(n_facts: int, rng: random.Random, names: Names) -> list[Fact]:
    """``n_facts`` facts with fresh subjects and answers, dated between 5 January and late November 2026."""
    facts = []
    for i, relation in enumerate(_relation_plan(n_facts)):
        otype = RELATIONS[relation][1]
        obj = names.make(otype)  # every answer is used once: a cleaner world and more distractors
        subj = names.make(RELATIONS[relation][0])  # a fresh subject: one answer per subject + relation
        day = date(2026, 1, 5) + timedelta(days=rng.randrange(320))
        en = EN_WORDING[relation]
        fill = {"s": subj, "o": obj, "d": fmt_date(day, 0)}
        facts.append(Fact(
            id=f"f{i:03d}", subject=subj, relation=relation, object=obj, object_type=otype,
            date=day.isoformat(), statement=en["statement"].format(**fill),
            questions=[q.format(**fill) for q in en["q"]], probe_question=en["probe"].format(**fill),
        ))
    return facts

