"""Two training processes on CPU (gloo): DDP and FSDP give the one-process losses, and resume bit for bit."""

import json

import pytest
from transformers import AutoModelForCausalLM

from cpt_core.train.config import FINAL, TrainConfig
from cpt_core.train.launch import run_train
from cpt_core.train.loop import train
from tests.train.test_loop import TINY, _metrics, _spec, data, fresh_accelerate_state  # noqa: F401

STEPS = 6


def _two_process_run(root, model, tokens, name, sharding, stop_at=None):
    # Two processes with 2 sequences each see the same 4 sequences per step as one process with 4.
    cfg = TrainConfig(**{**TINY, "micro_batch_size": 2}, max_steps=STEPS, checkpoint_every=2, precision="fp32",
                      num_processes=2, sharding=sharding)  # fmt: skip
    out = root / name / "model"

    def stop(done, total, message):
        if done == stop_at:
            raise KeyboardInterrupt

    if stop_at:
        with pytest.raises(KeyboardInterrupt):
            run_train(cfg, model, tokens, out, progress=stop)
    return run_train(cfg, model, tokens, out), out


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["none", "full"])
def test_two_processes_match_one_and_resume_bit_for_bit(data, sharding):  # noqa: F811
    root, model, tokens = data
    one = [r["loss"] for r in _metrics_of(train(_spec(root, model, tokens, f"one-{sharding}", max_steps=STEPS)),
                                          root / f"one-{sharding}" / "out")]  # fmt: skip
    whole, whole_out = _two_process_run(root, model, tokens, f"whole-{sharding}", sharding)
    resumed, resumed_out = _two_process_run(root, model, tokens, f"cut-{sharding}", sharding, stop_at=3)

    assert whole["summary"]["num_processes"] == 2 and resumed["summary"]["resumed_from_step"] == 2
    two = [r["loss"] for r in _metrics(whole_out)]
    assert [r["loss"] for r in _metrics(resumed_out)] == two  # bit for bit across the cut
    assert two == pytest.approx(one, abs=2e-4)  # the same objective; only float reduction order differs
    config = json.loads((whole_out / FINAL / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    a = AutoModelForCausalLM.from_pretrained(whole_out / FINAL).state_dict()
    b = AutoModelForCausalLM.from_pretrained(resumed_out / FINAL).state_dict()
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def _metrics_of(summary, folder):
    assert summary["steps"] == STEPS
    return _metrics(folder)


def test_gradient_checkpointing_recomputes_to_the_same_losses(data):  # noqa: F811
    root, model, tokens = data
    plain = train(_spec(root, model, tokens, "plain", max_steps=3))
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    ckpt = train(_spec(root, model, tokens, "ckpt", max_steps=3, gradient_checkpointing=True))
    assert plain["steps"] == ckpt["steps"] == 3
    a, b = _metrics(root / "plain" / "out"), _metrics(root / "ckpt" / "out")
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], abs=1e-6)
