"""The curation report: every step's per-language funnel and the profile of the accepted corpus.

Pure functions over the curate steps' manifests (``{step: manifest}`` in pipeline order): each step's
summary carries ``by_language`` (``cpt_core.curate.funnel``) and the last step's carries ``profile``
(``cpt_core.curate.profile``), so the report never reads the corpus.

* ``curate_markdown``: the funnel as one table (step x language: in, out, dropped, dropped by reason), the
  profile's tables (host, language, domain score, length, month), and the plots by the links given.
* ``funnel_records`` / ``profile_records``: the same tables as records, for table artifacts.
"""

from __future__ import annotations

from cpt_core.report.markdown import LANGUAGE_COLUMNS, fmt, language_rows, table

FUNNEL_COLUMNS = ["step", *LANGUAGE_COLUMNS]
PROFILE_TITLES = {
    "host": "host",
    "language": "language",
    "domain_score": "domain score",
    "length": "length (characters)",
    "month": "month (published, else fetched)",
}


def _summary(manifest: dict) -> dict:
    return manifest.get("summary") or {}


def funnel_rows(manifests: dict[str, dict]) -> list[list[str]]:
    """Rows of ``FUNNEL_COLUMNS``: each step's languages, the most documents in first."""
    return [
        [step, *row]
        for step, manifest in manifests.items()
        for row in language_rows(_summary(manifest).get("by_language") or {})
    ]


def funnel_records(manifests: dict[str, dict]) -> list[dict[str, str]]:
    return [dict(zip(FUNNEL_COLUMNS, row, strict=True)) for row in funnel_rows(manifests)]


def corpus_profile(manifests: dict[str, dict]) -> dict | None:
    """The accepted corpus's profile: the last step's that has one."""
    for manifest in reversed(list(manifests.values())):
        if _summary(manifest).get("profile"):
            return _summary(manifest)["profile"]
    return None


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def profile_rows(profile: dict, dim: str) -> list[list[str]]:
    docs, chars = profile.get("documents", 0), profile.get("characters", 0)
    return [
        [
            fmt(r["bucket"]),
            fmt(r["docs"]),
            _share(r["docs"], docs),
            fmt(r["chars"]),
            _share(r["chars"], chars),
        ]
        for r in profile.get(f"by_{dim}") or []
    ]


def profile_records(profile: dict) -> list[dict[str, str]]:
    header = ["dimension", "bucket", "docs", "docs share", "chars", "chars share"]
    return [
        dict(zip(header, [PROFILE_TITLES[dim], *row], strict=True))
        for dim in PROFILE_TITLES
        for row in profile_rows(profile, dim)
    ]


def profile_markdown(profile: dict) -> list[str]:
    """The profile's tables under ``###`` headings, as lines."""
    parts = [
        f"{fmt(profile.get('documents', 0))} documents, {fmt(profile.get('characters', 0))} characters, "
        f"{fmt(profile.get('hosts', 0))} hosts.",
    ]
    for dim, title in PROFILE_TITLES.items():
        heading = f"### By {title}"
        if dim == "host" and profile.get("hosts", 0) > profile.get("top_hosts", 0):
            heading += f" (top {profile['top_hosts']} of {fmt(profile['hosts'])}, the rest as other)"
        rows = profile_rows(profile, dim)
        parts += ["", heading, ""]
        if rows:
            parts.append(table([title, "docs", "share", "characters", "share"], rows))
        elif dim == "domain_score":
            parts.append("No domain scores: the select step's domain classifier is off.")
        else:
            parts.append("No documents.")
    return parts


def curate_markdown(run_id: str, manifests: dict[str, dict], images: dict[str, str] | None = None) -> str:
    """The curation report of a run; ``images`` maps a caption to a link (a path beside the report, or a
    data URL for the Prefect UI)."""
    parts = [f"# Curation `{run_id}`", "", "## Funnel", ""]
    rows = funnel_rows(manifests)
    if rows:
        parts.append(table(FUNNEL_COLUMNS, rows))
        parts += ["", "Languages as each step's filter saw them (the language step: as it detected them)."]
    else:
        parts.append("No per-language counts in these manifests.")
    parts += ["", "## Accepted corpus", ""]
    profile = corpus_profile(manifests)
    parts += profile_markdown(profile) if profile else ["No profile: the last curation step has not run."]
    if images:
        parts += ["", "## Plots", ""] + [f"![{caption}]({link})" for caption, link in images.items()]
    return "\n".join(parts) + "\n"
