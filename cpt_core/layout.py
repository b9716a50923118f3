"""Where everything of a run lives.

    <root>/runs/<run_id>/sources/            inputs made for this run (the demo's knowledge graph)
                        ingest/crawl/        WARC files + fetch log
                        ingest/extract/      documents/ (datatrove JSONL) + dropped/
                        curate/<step>/       documents/ + dropped/ per curation step
                        curate/eval_texts.jsonl  evaluation texts that decontamination checks against
                        synthesize/         documents/synthetic.jsonl, probe.jsonl (auto probe)
                        tokens/              train/*.arrow packed shards, heldout/, mix report
                        model/               final/ (save_pretrained), checkpoints/, metrics.jsonl
                        eval/                results.json (base vs trained)
                        report/              markdown reports and plots
    <root>/state/crawl.sqlite                what each run fetched (ETag, Last-Modified, content hash, ...)
    <root>/state/dedup/<run_id>/             hashes and MinHash signatures of each run's accepted documents
    <root>/state/probes/<run_id>.jsonl       each run's auto probe, re-run by later refreshes
    <root>/state/registry.json               champion pointer and lineage
    <root>/cache/                            converted base models and other reusable downloads

State written by a run is kept per run id and merged on read, excluding the reading run's own entry: a
stage redone after a crash therefore never deduplicates a document against itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CURATE_STEPS = ("language", "quality", "select", "exact_dedup", "near_dedup", "decontaminate")
DOCS = "documents"
DROPPED = "dropped"


@dataclass(frozen=True)
class RunLayout:
    root: Path
    run_id: str

    @classmethod
    def create(cls, root: str | Path, run_id: str) -> RunLayout:
        layout = cls(Path(root).expanduser().resolve(), run_id)
        layout.run.mkdir(parents=True, exist_ok=True)
        layout.state.mkdir(parents=True, exist_ok=True)
        return layout

    @property
    def run(self) -> Path:
        return self.root / "runs" / self.run_id

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def sources(self) -> Path:
        return self.run / "sources"

    @property
    def crawl(self) -> Path:
        return self.run / "ingest" / "crawl"

    @property
    def extract(self) -> Path:
        return self.run / "ingest" / "extract"

    def curate_step(self, step: str) -> Path:
        if step not in CURATE_STEPS:
            raise ValueError(f"unknown curation step {step!r}; steps are {', '.join(CURATE_STEPS)}")
        return self.run / "curate" / step

    @property
    def curated(self) -> Path:
        """The folder holding the last curation step's output."""
        return self.curate_step(CURATE_STEPS[-1])

    @property
    def eval_texts(self) -> Path:
        """The evaluation texts curation's ``decontaminate`` step checks documents against."""
        return self.run / "curate" / "eval_texts.jsonl"

    @property
    def start_model(self) -> Path:
        """The base checkpoint after model surgery and tokenizer extension (when the config asks for them)."""
        return self.run / "start-model"

    @property
    def synthesize(self) -> Path:
        return self.run / "synthesize"

    @property
    def probes_dir(self) -> Path:
        return self.state / "probes"

    @property
    def tokens(self) -> Path:
        return self.run / "tokens"

    @property
    def model(self) -> Path:
        return self.run / "model"

    @property
    def eval(self) -> Path:
        return self.run / "eval"

    @property
    def report(self) -> Path:
        return self.run / "report"

    @property
    def dedup_dir(self) -> Path:
        return self.state / "dedup"

    @property
    def registry(self) -> Path:
        return self.state / "registry.json"


def run_relative_path(path: str | Path, run_id: str) -> str | None:
    """``path`` relative to its root when it lies in ``runs/<run_id>/`` (``runs/<run_id>/model/final``), else None.

    Paths kept in the state (the champion's model folder) are absolute; this finds the same folder under a
    root that was moved or mirrored to another place.
    """
    parts = Path(path).parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == ("runs", run_id):
            return Path(*parts[i:]).as_posix()
    return None
