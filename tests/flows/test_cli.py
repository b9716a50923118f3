"""The `cptflow` command: config errors before any work, and single stages over a folder of JSONL."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def stage_summary(output: str) -> dict:
    """The JSON summary `cptflow stage` prints (after whatever the pipeline logged)."""
    start = output.index('{\n  "stage"')
    return json.loads(output[start : output.index("\n}", start) + 2])


def test_malformed_config_fails_before_any_work_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"root: {tmp_path / 'root'}\ncurate:\n  languag: {{languages: [en]}}\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "curate.languag" in result.output
    assert not (tmp_path / "root").exists()


def test_validate_prints_the_resolved_config(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  lr: 0.001\n")
    result = runner.invoke(app, ["validate", str(good), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["train"]["lr"] == 0.001 and resolved["train"]["epochs"] == 2


def test_single_stages_over_a_folder_of_jsonl(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    english = (
        "The harbour council met on Tuesday to discuss the new ferry timetable. Members agreed that the early "
        "morning service should run every day of the week, and that the evening boats would stop at the "
        "northern pier during the summer months. The chair said the changes would help workers who travel "
        "to the islands, and that the council would review the plan again after the first season of service."
    )
    rows = [
        {"id": "a", "text": english, "metadata": {"url": "http://x/a"}},
        {"id": "b", "text": english, "metadata": {"url": "http://x/b"}},
        {"id": "c", "text": "Der Hafenrat traf sich am Dienstag, um den neuen Fahrplan der Fähre zu besprechen. "
         "Die Mitglieder waren sich einig, dass der Frühdienst jeden Tag fahren soll.", "metadata": {}},
    ]
    (docs / "part.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"root: {tmp_path / 'root'}\n")

    result = runner.invoke(app, ["stage", "language", "--config", str(config), "--input", str(docs),
                                 "--output", str(tmp_path / "lang")])
    assert result.exit_code == 0, result.output
    summary = stage_summary(result.output)
    assert summary["docs_in"] == 3 and summary["docs_out"] == 2
    result = runner.invoke(app, ["stage", "exact_dedup", "--config", str(config), "--input", str(tmp_path / "lang"),
                                 "--output", str(tmp_path / "dedup")])
    assert result.exit_code == 0, result.output
    summary = stage_summary(result.output)
    assert summary["docs_out"] == 1 and summary["dropped"] == {"exact_duplicate": 1}

    result = runner.invoke(app, ["stage", "tokenize", "--config", str(config), "--input", str(tmp_path / "dedup"),
                                 "--output", str(tmp_path / "tok")])
    assert result.exit_code == 2 and "needs --model" in result.output


def test_stage_reports_a_malformed_line_by_file_and_line_and_goes_on(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    text = (
        "The harbour council met on Tuesday to discuss the new ferry timetable. Members agreed that the early "
        "morning service should run every day of the week, and that the evening boats would stop at the pier."
    )
    lines = [json.dumps({"id": "a", "text": text}), '{"id": "broken", "text": "cut', json.dumps({"id": "b", "text": text + " Again."})]
    (docs / "part.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"root: {tmp_path / 'root'}\n")

    result = runner.invoke(app, ["stage", "language", "--config", str(config), "--input", str(docs),
                                 "--output", str(tmp_path / "lang")])
    assert result.exit_code == 0, result.output
    summary = stage_summary(result.output)
    assert summary["docs_in"] == 3 and summary["docs_out"] == 2
    assert summary["dropped"] == {"malformed_json": 1}
    assert any("part.jsonl:2 malformed_json" in place for place in summary["unreadable"])
    assert "unreadable input (counted as dropped, the rest went on): " in result.output


def test_stage_fails_at_once_while_another_process_holds_the_root(tmp_path):
    from tests.test_lock import hold_root_in_subprocess

    root = tmp_path / "root"
    config = tmp_path / "c.yaml"
    config.write_text(f"root: {root}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "part.jsonl").write_text(json.dumps({"id": "a", "text": "hello", "metadata": {}}) + "\n")
    proc = hold_root_in_subprocess(root, "weekly-1")
    try:
        result = runner.invoke(app, ["stage", "language", "--config", str(config), "--input", str(docs),
                                     "--output", str(tmp_path / "lang")])
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 1
    assert str(root.resolve()) in result.output and "run weekly-1" in result.output
    assert f"pid {proc.pid}" in result.output and "another root" in result.output
    assert not (tmp_path / "lang").exists()


def registry_with_champion(tmp_path):
    from cpt_core.evaluate.gate import Decision
    from cpt_core.evaluate.registry import Registry

    root = tmp_path / "root"
    reg = Registry(root / "state" / "registry.json")
    res = {"base": {"domain_bpb": 2.0, "general_bpb": 1.0}, "trained": {"domain_bpb": 1.8, "general_bpb": 1.01}}
    folders = {}
    for n, parent in ((1, "smol"), (2, "r1")):
        folders[n] = tmp_path / f"r{n}" / "model"
        folders[n].mkdir(parents=True)
        reg.record(f"r{n}", folders[n], res, Decision(True, ["ok"]), {"parent": parent})
    return root, reg, folders


def test_registry_ls_show_and_reset_champion_repair_a_missing_folder(tmp_path):
    root, reg, folders = registry_with_champion(tmp_path)
    folders[2].rmdir()  # the champion's model folder is gone

    result = runner.invoke(app, ["registry", "ls", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "champion: r2" in result.output and "(model folder missing)" in result.output
    assert "champion r2" in result.output and str(folders[2]) in result.output
    assert "reset-champion" in result.output

    result = runner.invoke(app, ["registry", "show", "r2", "--root", str(root)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["champion"] is True and shown["lineage"] == ["r2", "r1", "smol"]

    # Neither or both of --to / --base; a run whose folder is gone; an unknown run: refused, pointer kept.
    assert runner.invoke(app, ["registry", "reset-champion", "--root", str(root)]).exit_code == 2
    result = runner.invoke(app, ["registry", "reset-champion", "--root", str(root), "--to", "r2"])
    assert result.exit_code == 1 and str(folders[2]) in result.output
    result = runner.invoke(app, ["registry", "reset-champion", "--root", str(root), "--to", "r9"])
    assert result.exit_code == 1 and "r9" in result.output
    assert reg.champion()["run_id"] == "r2"

    result = runner.invoke(app, ["registry", "reset-champion", "--root", str(root), "--to", "r1"])
    assert result.exit_code == 0, result.output
    assert reg.champion_model()["run_id"] == "r1"
    result = runner.invoke(app, ["registry", "reset-champion", "--root", str(root), "--base"])
    assert result.exit_code == 0, result.output
    assert reg.champion() is None and reg.champion_model() is None
    assert [r["to"] for r in json.loads(reg.path.read_text())["resets"]] == ["r1", None]


def test_stage_crawl_takes_seeds_and_allowed_hosts_from_the_command_line(tmp_path):
    from cpt_core.demo.server import serve
    from cpt_core.demo.site import DemoSiteConfig, build_site

    config = tmp_path / "c.yaml"
    # a web source with no seeds: the command line gives them
    config.write_text(f"root: {tmp_path / 'root'}\ningest:\n  sources: [{{kind: web, crawl: {{delay_s: 0}}}}]\n")
    site = build_site(DemoSiteConfig(n_facts=5, korean_share=0.0))
    with serve(site, "127.0.0.1", 0, 0.0) as url:
        args = ["stage", "crawl", "--config", str(config), "--seed", url]
        refused = runner.invoke(app, [*args, "--output", str(tmp_path / "refused")])
        allowed = runner.invoke(app, [*args, "--output", str(tmp_path / "allowed"), "--allow-host", "127.0.0.1"])
    assert refused.exit_code == 0, refused.output
    assert stage_summary(refused.output)["dropped"] == {"private_address": 1}, "loopback is refused by default"
    assert allowed.exit_code == 0, allowed.output
    fetched = [json.loads(x) for x in (tmp_path / "allowed" / "fetch_log.jsonl").read_text().splitlines()]
    assert {r["url"] for r in fetched if r["reason"] == "fetched"} >= {url + p.lstrip("/") for p in site.article_paths["en"]}


def test_stage_extract_reads_a_crawl_folder_and_the_configs_documents_and_warc_sources(tmp_path):
    from tests.doc_files import read_docs
    from tests.ingest.test_sources import TEXT, _write_warc

    crawl = tmp_path / "crawl" / "warc"  # a crawl's output folder, as scripts pass it
    crawl.mkdir(parents=True)
    _write_warc(crawl / "crawl-00000.warc.gz", {"https://site.example/news": "Crawled"})
    archive = _write_warc(tmp_path / "old.warc.gz", {"https://old.example/1": "Archived"})
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "memo.md").write_text("# Memo\n\n" + TEXT + "\n")
    stored = (
        f"  - {{kind: warc, name: archive, paths: ['{archive}']}}\n"
        f"  - {{kind: documents, name: memos, path: '{docs}'}}\n"
    )
    only_stored = tmp_path / "stored.yaml"
    only_stored.write_text(f"root: {tmp_path / 'root'}\ningest:\n  extract: {{min_chars: 20}}\n  sources:\n{stored}")
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"root: {tmp_path / 'root'}\ningest:\n  extract: {{min_chars: 20}}\n")

    def extract(config, out, *extra):
        result = runner.invoke(app, ["stage", "extract", "--config", str(config), *extra, "--output", str(out)])
        assert result.exit_code == 0, result.output
        return {(d["metadata"]["source"], d["metadata"].get("url") or "memo") for d in read_docs(out / "documents")}

    assert extract(plain, tmp_path / "a", "--input", str(tmp_path / "crawl")) == {("web", "https://site.example/news")}
    assert extract(only_stored, tmp_path / "b") == {("archive", "https://old.example/1"), ("memos", "memo")}
    assert extract(only_stored, tmp_path / "c", "--input", str(tmp_path / "crawl")) == {
        ("web", "https://site.example/news"), ("archive", "https://old.example/1"), ("memos", "memo"),
    }
    missing = runner.invoke(app, ["stage", "extract", "--config", str(plain), "--output", str(tmp_path / "d")])
    assert missing.exit_code == 2 and "needs --input" in missing.output


def test_notify_snapshot_needs_an_existing_path_and_a_server(tmp_path, monkeypatch):
    missing = CliRunner().invoke(app, ["notify", "snapshot", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        offline = CliRunner().invoke(app, ["notify", "snapshot", str(tmp_path)])
    assert offline.exit_code == 2 and "PREFECT_API_URL" in offline.output


def test_a_snapshot_becomes_one_more_documents_source(tmp_path):
    from cpt_core.ingest.sources import DocumentsSource
    from flows.run_steps import with_snapshot
    from tests.flows.conftest import small_config

    config = small_config(tmp_path / "root", tmp_path / "model")
    assert with_snapshot(config, None, "wiki") is config
    assert with_snapshot(config, "None", "wiki") is config  # the event carried no path
    added = with_snapshot(config, str(tmp_path / "export"), "wiki").ingest.sources
    assert len(added) == len(config.ingest.sources) + 1
    assert isinstance(added[-1], DocumentsSource) and added[-1].name == "wiki"
    assert added[-1].path == str(tmp_path / "export")


def test_commands_that_need_a_local_root_refuse_a_url(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("root: s3://bucket/cpt\n")
    result = runner.invoke(app, ["stage", "crawl", "--config", str(recipe), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "local folders" in result.output
    result = runner.invoke(app, ["run", str(recipe), "--fresh"])
    assert result.exit_code == 2 and "local root only" in result.output
