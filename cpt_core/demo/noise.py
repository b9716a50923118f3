"""The noise a real crawl meets, added to the demo site: each kind under its own paths, so a run's report
(and the flow tests) can check that every noise page was dropped at the right stage for the right reason.

Kinds: exact and near duplicates of real articles, boilerplate-only pages, spam, other languages, empty
and non-HTML responses, a slow page, a dead link, an off-site link and a robots.txt-disallowed page.
"""

from __future__ import annotations

import html
import json
import random

from cpt_core.demo.pages import EXTERNAL_URL, SITE_NAME, Page, html_page, index_html

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



def add_noise(
    pages: dict[str, Page], noise: dict[str, list[str]], en_paths: list[str], n_articles: int,
    rng: random.Random, slow_delay_s: float,
) -> None:
    """Add every noise page to ``pages`` and list its path under its kind in ``noise`` (the dead link and the
    off-site link are listed but not served)."""

    def add(kind: str, path: str, page: Page) -> None:
        pages[path] = page
        noise.setdefault(kind, []).append(path)

    for k in range(2):
        src = en_paths[k * 5]
        add("exact_duplicate", "/amp" + src, Page(pages[src].body, last_modified=pages[src].last_modified))
        near = _near_duplicate(pages[src].body.decode(), f"MC-2026-{rng.randrange(10_000, 99_999)}")
        add("near_duplicate", f"/partners/story-{k + 1}.html", Page(near.encode()))
    add("boilerplate", "/cookies.html", Page(html_page("Cookie settings", (
        '<div class="cookie-banner"><h2>Cookie settings</h2><form><label><input type="checkbox" checked> '
        'Necessary</label><label><input type="checkbox"> Analytics</label><button>Accept all</button>'
        '<button>Reject</button></form></div>')).encode()))
    tags = ["business", "towns", "elections", "sport", "culture", "technology", "awards", "transport"]
    add("boilerplate", "/tags/", Page(index_html("Tags", [(f"/tags/#{t}", t.title()) for t in tags]).encode()))
    add("boilerplate", "/login.html", Page(html_page("Sign in", (
        '<div class="login"><h2>Sign in</h2><form method="post"><label>Email <input name="email"></label>'
        '<label>Password <input name="password" type="password"></label><button>Sign in</button></form>'
        '<a href="/login.html#reset">Forgot password?</a></div>')).encode()))
    for path, (title, lines) in _SPAM.items():
        main = f"<article><h1>{html.escape(title)}</h1>" + "".join(f"<p>{html.escape(ln)}</p>" for ln in lines)
        add("spam", path, Page(html_page(title, main + "</article>").encode()))
    for lang, (title, text) in _OTHER_LANG.items():
        main = f"<article><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></article>"
        add("other_language", f"/world/{lang}.html", Page(html_page(title, main, lang=lang).encode()))
    add("empty", "/empty.html", Page(b""))
    add("empty", "/blank.html", Page(b"<!DOCTYPE html>\n<html><head><title></title></head><body></body></html>\n"))
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
           b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    add("non_html", "/files/annual-report.pdf", Page(pdf, "application/pdf", charset=None))
    api = json.dumps({"site": SITE_NAME, "articles": n_articles, "status": "ok"})
    add("non_html", "/api/status.json", Page(api.encode(), "application/json"))
    slow_main = ("<article><h1>Live: storm updates</h1><p>This live page collects reports on the storm that "
                 "crossed the coast overnight. It is refreshed every few minutes.</p></article>")
    add("slow", "/news/live-storm-updates.html", Page(html_page("Live: storm updates", slow_main).encode(),
                                                      delay_s=slow_delay_s or 3.0))
    noise["broken_link"] = ["/news/archive-2025.html"]
    noise["external_link"] = [EXTERNAL_URL]
    private = ("<article><h1>Staff notes</h1><p>Internal staff notes: PRIVATE-MARKER-7731. The editorial "
               "meeting moves to Thursday and the coffee machine on the second floor is broken again.</p></article>")
    add("robots_disallowed", "/private/staff-notes.html", Page(html_page("Staff notes", private).encode()))
