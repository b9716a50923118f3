"""The CPT loop: param groups, LR schedule, data order, golden losses, resume, and the accelerate subprocess."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import cpt_core.train.loop as training
from cpt_core.data.tokenize import TokenizeConfig, run_tokenize
from cpt_core.faults import TransientError, is_transient
from cpt_core.train.base_model import build_tiny_llama
from cpt_core.train.checkpoint import claim_checkpoints
from cpt_core.train.config import FINAL, METRICS, TrainConfig
from cpt_core.train.launch import run_subprocess, run_train, train_key
from cpt_core.train.loop import train
from cpt_core.train.optim import BatchPlan, lr_factor, param_groups

TEXTS = [
    f"Entry {i}. In the year {1200 + i} the council of Alder counted {i * 11} sheep, {i % 7} mills and "
    f"{i * 3 % 13} bridges; the river rose {i % 5} feet and the {['north', 'south', 'east'][i % 3]} road flooded."
    for i in range(80)
]
# Golden values for the tiny model on TEXTS (torch 2.13 CPU, fp32). If build_tiny_llama, the packing or the
# loop change on purpose, rerun test_golden_losses_decrease_and_repeat and update them. Last updated when the
# held-out split began clustering on NFKC/punctuation-normalised shingles (other documents are held out).
GOLDEN_FIRST_LOSS = 5.7566
GOLDEN_LAST_LOSS = 4.2374
# One thread: a 32-wide model gains nothing from more, and OpenMP spinning on a shared 2-core machine makes
# two threads ~10x slower.
TINY = {"micro_batch_size": 4, "lr": 1e-2, "embedding_lr_mult": 1.0, "cpu_threads": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    model = build_tiny_llama(root / "tiny", TEXTS, vocab_size=320, hidden=32, heads=2, seq_len=32)
    with JsonlWriter(str(root / "curated" / "documents")) as writer:
        for i, text in enumerate(TEXTS):
            writer.write(Document(text=text, id=f"e{i}", metadata={}), rank=0)
    cfg = TokenizeConfig(seq_len=32, replay_ratio=0.0, heldout_fraction=0.05)
    run_tokenize(cfg, root / "curated", model, root / "tokens")
    return root, model, root / "tokens"


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    # In-process runs share accelerate's singleton state; each run must start from a clean one.
    from accelerate.state import AcceleratorState

    threads = torch.get_num_threads()
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(threads)


def _spec(root: Path, model: Path, tokens: Path, name: str, **train_kw) -> dict:
    cfg = TrainConfig(**{**TINY, "max_steps": 8, "precision": "fp32", **train_kw})
    return {
        "model_dir": str(model),
        "tokens_dir": str(tokens),
        "output_dir": str(root / name / "out"),
        "checkpoint_dir": str(root / name / "ckpt"),
        "train": cfg.model_dump(mode="json"),
    }


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS).read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------
# Pieces


def test_param_groups_dedupe_tied_embeddings_and_skip_decay_on_norms():
    cfg = TrainConfig(lr=2e-4, embedding_lr_mult=0.1, weight_decay=0.1)
    for tied in (True, False):
        config = LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            tie_word_embeddings=tied, attention_bias=True,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(param_groups(model, cfg))
        groups = {g["name"]: g for g in optimizer.param_groups}
        all_ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
        assert len(all_ids) == len(set(all_ids)) == len({id(p) for p in model.parameters()})
        embeddings = {id(p) for p in groups["embeddings"]["params"]}
        assert id(model.model.embed_tokens.weight) in embeddings and id(model.lm_head.weight) in embeddings
        assert len(embeddings) == (1 if tied else 2)
        assert groups["embeddings"]["lr"] == pytest.approx(2e-5) and groups["embeddings"]["weight_decay"] == 0
        assert groups["decay"]["lr"] == 2e-4 and groups["decay"]["weight_decay"] == 0.1
        assert groups["no_decay"]["weight_decay"] == 0
        assert all(p.ndim < 2 for p in groups["no_decay"]["params"])
        assert id(model.model.norm.weight) in {id(p) for p in groups["no_decay"]["params"]}
        assert id(model.model.layers[0].self_attn.q_proj.bias) in {id(p) for p in groups["no_decay"]["params"]}
        assert all(p.ndim == 2 for p in groups["decay"]["params"])


def test_lr_schedule_warms_up_then_cosines_to_the_floor():
    total, warmup_ratio, floor = 100, 0.1, 0.1
    f = [lr_factor(s, total, warmup_ratio, floor) for s in range(total + 1)]
    assert 0 < f[0] < f[5] < f[9] <= 1.0 and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[55] == pytest.approx(floor + (1 - floor) * 0.5)  # half way through the cosine
    assert f[total] == pytest.approx(floor) and min(f[10:]) >= floor - 1e-12

    # Through LambdaLR on a real optimizer: every group follows the schedule, keeping its own peak.
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2))  # fmt: skip
    cfg = TrainConfig(lr=1e-3, embedding_lr_mult=0.5)
    opt = torch.optim.AdamW(param_groups(model, cfg))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup_ratio, floor))
    seen = []
    for _ in range(total):
        seen.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert seen[10]["decay"] == pytest.approx(1e-3) and seen[10]["embeddings"] == pytest.approx(5e-4)
    assert seen[-1]["decay"] == pytest.approx(1e-3 * lr_factor(99, total, warmup_ratio, floor))


def test_batch_plan_is_a_seeded_permutation_per_epoch_split_across_ranks():
    cfg = TrainConfig(micro_batch_size=2, grad_accum_steps=2, seed=3)
    plan = BatchPlan(12, cfg, num_processes=2)
    # 12 sequences, 8 per optimizer step: step 0 and half of step 1 make epoch 0.
    epoch0 = [i for step in (0, 1) for m in (0, 1) for r in (0, 1) for i in plan.indices(step, m, r)][:12]
    assert sorted(epoch0) == list(range(12))
    assert epoch0 != list(range(12))
    assert set(plan.indices(0, 0, 0)).isdisjoint(plan.indices(0, 0, 1))
    assert BatchPlan(12, cfg, 2).indices(5, 1, 1) == plan.indices(5, 1, 1)
    other = BatchPlan(12, cfg.model_copy(update={"seed": 4}), 2)
    assert [other.indices(0, m, r) for m in (0, 1) for r in (0, 1)] != [
        plan.indices(0, m, r) for m in (0, 1) for r in (0, 1)
    ]


# ---------------------------------------------------------------------------------------------------------
# The loop, in process


def test_golden_losses_decrease_and_repeat(data):
    root, model, tokens = data
    first = train(_spec(root, model, tokens, "golden-a"))
    rows = _metrics(root / "golden-a" / "out")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert first["steps"] == 8 and first["tokens"] == 8 * 4 * 32 and first["precision"] == "fp32"
    # Tolerances allow for other CPUs' float kernels, not for a changed model, data order or schedule.
    assert rows[0]["loss"] == pytest.approx(GOLDEN_FIRST_LOSS, abs=5e-3)
    assert rows[-1]["loss"] == pytest.approx(GOLDEN_LAST_LOSS, abs=2e-2)
    assert all(b["loss"] < a["loss"] for a, b in zip(rows, rows[1:], strict=False))
    assert all(math.isfinite(r["grad_norm"]) and r["tokens_per_s"] > 0 for r in rows)

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    train(_spec(root, model, tokens, "golden-b"))
    assert [r["loss"] for r in _metrics(root / "golden-b" / "out")] == [r["loss"] for r in rows]
    final = AutoModelForCausalLM.from_pretrained(root / "golden-a" / "out" / FINAL)
    assert final.config.tie_word_embeddings and (root / "golden-a" / "out" / FINAL / "tokenizer.json").exists()


def test_resume_after_a_crash_continues_exactly(data, monkeypatch):
    root, model, tokens = data
    reference = train(_spec(root, model, tokens, "ref", checkpoint_every=3))
    ref_rows = _metrics(root / "ref" / "out")

    real_save = training.save_checkpoint

    def save_then_crash(accelerator, checkpoint_dir, step, tokens_, output_dir):
        real_save(accelerator, checkpoint_dir, step, tokens_, output_dir)
        if step == 6:
            raise RuntimeError("simulated crash after the step-6 checkpoint")

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    spec = _spec(root, model, tokens, "crash", checkpoint_every=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(spec)
    ckpts = sorted(p.name for p in (root / "crash" / "ckpt").iterdir())
    assert ckpts == ["step-00000006"]  # older checkpoints are pruned

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    resumed = train(spec)
    rows = _metrics(root / "crash" / "out")
    assert resumed["resumed_from_step"] == 6 and reference["resumed_from_step"] is None
    assert [r["step"] for r in rows] == list(range(1, 9))  # continued, not restarted, and no duplicates
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref_rows], abs=1e-5)
    assert rows[-1]["lr"] == pytest.approx(ref_rows[-1]["lr"])


def test_lora_with_staged_unfreezing_trains_and_saves_a_merged_hf_model(data, capsys):
    root, model, tokens = data
    stages = [{"until_step": 2, "train": ["embeddings"]}, {"train": ["all"]}]
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    summary = train(_spec(root, model, tokens, "lora", max_steps=4, mode="lora", lora=lora, unfreeze=stages))
    out = capsys.readouterr().out
    assert "unfreeze stage 0: embeddings" in out and "unfreeze stage 1: all" in out
    assert summary["steps"] == 4 and summary["final_loss"] < summary["first_loss"]
    final = AutoModelForCausalLM.from_pretrained(root / "lora" / "out" / FINAL)
    base = AutoModelForCausalLM.from_pretrained(model)
    assert not any("lora" in n for n in final.state_dict())
    assert sorted(final.state_dict()) == sorted(base.state_dict())
    changed = {n for n, p in final.state_dict().items() if not torch.equal(p, base.state_dict()[n])}
    # Embeddings (tied lm_head) and the merged q/v projections moved; the MLPs and norms did not.
    assert "model.embed_tokens.weight" in changed and "model.layers.0.self_attn.q_proj.weight" in changed
    assert not any("mlp" in n or "norm" in n or "k_proj" in n for n in changed)


# ---------------------------------------------------------------------------------------------------------
# The stage: accelerate launch in a subprocess


def test_run_train_launches_accelerate_resumes_after_kill_and_skips_when_done(data):
    root, model, tokens = data
    cfg = TrainConfig(**TINY, max_steps=6, checkpoint_every=2, precision="auto")
    out = root / "stage" / "model"
    seen = []

    def interrupt(done, total, message):
        seen.append((done, total))
        if done == 3:
            raise KeyboardInterrupt  # what a cancelled flow does to the task: the subprocess must die too

    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, model, tokens, out, progress=interrupt)
    checkpoints = out.parent / "model.checkpoints"
    assert seen[:3] == [(1, 6), (2, 6), (3, 6)]
    assert (checkpoints / "step-00000002" / "step.json").exists() and not out.exists()

    progress = []
    # A longer timeout cannot change the weights: the rerun keeps the key and resumes from the checkpoint.
    patient = cfg.model_copy(update={"timeout_s": 3600})
    manifest = run_train(patient, model, tokens, out, progress=lambda d, t, m: progress.append((d, t)))
    s = manifest["summary"]
    assert not manifest["skipped"] and s["resumed_from_step"] == 2
    assert [d for d, _ in progress] == [3, 4, 5, 6] and {t for _, t in progress} == {6}
    assert [r["step"] for r in _metrics(out)] == list(range(1, 7))
    assert s["precision"] == ("fp32" if not torch.cuda.is_available() else s["precision"])
    assert s["steps"] == 6 and s["device"].startswith(("cpu", "cuda")) and "loss" in s["log_line"]
    assert AutoModelForCausalLM.from_pretrained(out / FINAL).num_parameters() > 0
    assert not checkpoints.exists()  # removed after success
    assert run_train(cfg, model, tokens, out)["skipped"]


def test_train_key_ignores_timeouts_and_intervals_but_not_the_recipe(data, tmp_path):
    root, model, tokens = data
    cfg = TrainConfig(**TINY, max_steps=6)
    key, _ = train_key(cfg, model, tokens)
    for harmless in ({"timeout_s": 60}, {"log_every": 5}, {"checkpoint_every": 7}):
        assert train_key(cfg.model_copy(update=harmless), model, tokens)[0] == key, harmless
    for recipe in ({"lr": 2e-2}, {"max_steps": 7}, {"seed": 1}, {"cpu_threads": 2}):
        assert train_key(cfg.model_copy(update=recipe), model, tokens)[0] != key, recipe

    # The checkpoints a run left are kept for a rerun with a longer timeout, dropped for another LR.
    folder = tmp_path / "model.checkpoints"
    claim_checkpoints(folder, key)
    (folder / "step-00000004").mkdir()
    claim_checkpoints(folder, train_key(cfg.model_copy(update={"timeout_s": 7200, "log_every": 3}), model, tokens)[0])
    assert (folder / "step-00000004").exists()
    claim_checkpoints(folder, train_key(cfg.model_copy(update={"lr": 3e-3}), model, tokens)[0])
    assert not (folder / "step-00000004").exists()


def test_checkpoints_of_another_configuration_are_discarded(tmp_path):
    folder = tmp_path / "model.checkpoints"
    claim_checkpoints(folder, "key-a")
    (folder / "step-00000004").mkdir()
    claim_checkpoints(folder, "key-a")
    assert (folder / "step-00000004").exists()
    claim_checkpoints(folder, "key-b")
    assert not (folder / "step-00000004").exists()
    assert json.loads((folder / "key.json").read_text()) == {"key": "key-b"}


def test_subprocess_failures_and_timeouts_are_reported(tmp_path):
    script = "import sys\nfor i in range(60): print('line', i)\nsys.exit(3)"
    with pytest.raises(RuntimeError, match=r"exited with code 3(.|\n)*line 59") as err:
        run_subprocess([sys.executable, "-c", script], 60, tmp_path, lambda *a: None)
    assert "line 10\n" not in str(err.value)  # only the last 40 lines
    with pytest.raises(TimeoutError, match="timeout_s=1s"):
        run_subprocess([sys.executable, "-c", "import time; time.sleep(30)"], 1, tmp_path, lambda *a: None)
    # A trainer killed by a signal (the OOM killer, a preempted node) is worth a retry; its own exit code is not.
    assert not is_transient(err.value)
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with pytest.raises(TransientError, match="exited with code -9"):
        run_subprocess([sys.executable, "-c", killed], 60, tmp_path, lambda *a: None)
