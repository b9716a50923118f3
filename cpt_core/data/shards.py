"""Packed token shards: written as a stream, read memory-mapped, readable by the ``datasets`` library.

A tokens folder holds ``train/shard-00000.arrow``… (Arrow IPC *stream* files, one ``list<int32>`` column
``input_ids``, every row exactly ``seq_len`` tokens) and ``documents.arrow``, the boundary index: one row per
packed document with where it starts (shard, row, offset in the row) and how many tokens it spans, so a
sequence can be traced back to its documents without re-tokenizing.

``PackedShardWriter`` holds one shard's worth of tokens in a fixed numpy buffer and flushes it when full:
peak memory is one shard, whatever the corpus size. The IPC stream format is what
``datasets.Dataset.from_file`` and ``datasets.load_dataset("arrow", ...)`` read; the trainer's reader also
accepts the IPC file format of older tokens folders.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

TRAIN_DIR = "train"
INDEX_FILE = "documents.arrow"
SHARD_PATTERN = "shard-{:05d}.arrow"
SCHEMA = pa.schema([pa.field("input_ids", pa.list_(pa.int32()))])
INDEX_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("phase", pa.int16()),
        pa.field("shard", pa.int32()),
        pa.field("row", pa.int32()),
        pa.field("offset", pa.int32()),
        pa.field("length", pa.int32()),
        pa.field("kept", pa.int32()),
    ]
)
INDEX_BATCH = 1024


class PackedShardWriter:
    """Packs token arrays into ``seq_len`` rows and writes a shard every ``shard_sequences`` rows.

    ``limit`` is the number of tokens that fill whole rows (known in advance from the document lengths):
    tokens past it are the tail that does not fill a row; ``add`` returns how many of its tokens were kept.
    """

    def __init__(self, folder: Path, seq_len: int, shard_sequences: int, limit: int) -> None:
        self.folder, self.seq_len, self.limit = Path(folder), seq_len, limit
        self.folder.mkdir(parents=True, exist_ok=True)
        self.buffer = np.empty(shard_sequences * seq_len, dtype=np.int32)
        self.fill = 0  # tokens in the buffer
        self.written = 0  # tokens flushed to shards
        self.shards = 0

    @property
    def position(self) -> int:
        """Global token position of the next token added."""
        return self.written + self.fill

    def where(self, position: int) -> tuple[int, int, int]:
        """(shard, row in shard, offset in row) of a global token position."""
        seq, offset = divmod(position, self.seq_len)
        shard, row = divmod(seq, len(self.buffer) // self.seq_len)
        return shard, row, offset

    def add(self, tokens: np.ndarray) -> int:
        kept = int(max(0, min(len(tokens), self.limit - self.position)))
        done = 0
        while done < kept:
            take = min(kept - done, len(self.buffer) - self.fill)
            self.buffer[self.fill : self.fill + take] = tokens[done : done + take]
            self.fill += take
            done += take
            if self.fill == len(self.buffer):
                self._flush()
        return kept

    def close(self) -> int:
        """Write the last, partial shard; returns the number of shards."""
        if self.fill:
            self._flush()
        return self.shards

    def _flush(self) -> None:
        rows = self.fill // self.seq_len
        values = pa.array(self.buffer[: rows * self.seq_len])
        offsets = pa.array(np.arange(0, rows * self.seq_len + 1, self.seq_len, dtype=np.int32))
        column = pa.ListArray.from_arrays(offsets, values)
        with pa.OSFile(str(self.folder / SHARD_PATTERN.format(self.shards)), "wb") as sink:
            with pa.ipc.new_stream(sink, SCHEMA) as writer:
                writer.write_batch(pa.record_batch([column], schema=SCHEMA))
        self.written += rows * self.seq_len
        self.fill -= rows * self.seq_len
        self.shards += 1


class BoundaryIndexWriter:
    """Appends boundary rows and writes them to an Arrow stream file in batches of ``INDEX_BATCH``."""

    def __init__(self, path: Path) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, INDEX_SCHEMA)
        self._rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
        self.count = 0

    def add(self, **row) -> None:
        for name, values in self._rows.items():
            values.append(row[name])
        self.count += 1
        if len(self._rows["doc_id"]) >= INDEX_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows["doc_id"]:
            self._writer.write_batch(pa.record_batch(list(self._rows.values()), schema=INDEX_SCHEMA))
            self._rows = {name: [] for name in INDEX_SCHEMA.names}

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._sink.close()


class TokenCache:
    """Token ids of every document to pack, appended to one flat int32 file; ``read(k)`` reads one back.

    Memory per document is two integers (offset, length) and its id; the tokens stay on disk (and in the
    OS page cache) until packed. The file is removed on exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "w+b")  # noqa: SIM115  (closed in close())
        self._offsets, self._lengths = array("q"), array("q")
        self.ids: list[str] = []
        self._end = 0

    def __enter__(self) -> TokenCache:
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()
        if self.path.exists():
            os.remove(self.path)

    def append(self, ids: np.ndarray, doc_id: str) -> int:
        self._fh.seek(self._end)
        self._fh.write(ids.astype(np.int32, copy=False).tobytes())
        self._offsets.append(self._end)
        self._lengths.append(len(ids))
        self._end += 4 * len(ids)
        self.ids.append(doc_id)
        return len(self._lengths) - 1

    def length(self, k: int) -> int:
        return self._lengths[k]

    def read(self, k: int) -> np.ndarray:
        self._fh.seek(self._offsets[k])
        return np.frombuffer(self._fh.read(4 * self._lengths[k]), dtype=np.int32)

    def extend(self, arrays: Iterator[np.ndarray], ids: Iterator[str]) -> list[int]:
        return [self.append(a, i) for a, i in zip(arrays, ids, strict=False)]


def read_boundary_index(tokens_dir: Path) -> pa.Table:
    """The boundary index of a tokens folder as an Arrow table."""
    path = Path(tokens_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no boundary index {path}: run the tokenize stage first")
    return pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()


def shard_paths(tokens_dir: Path) -> list[Path]:
    """The shard files of a tokens folder (or of its ``train/`` folder given directly)."""
    tokens_dir = Path(tokens_dir)
    folder = tokens_dir / TRAIN_DIR if (tokens_dir / TRAIN_DIR).is_dir() else tokens_dir
    paths = sorted(folder.glob("shard-*.arrow"))
    if not paths:
        raise FileNotFoundError(f"no Arrow shards (shard-*.arrow) in {folder}: run the tokenize stage first")
    return paths


def _read_rows(path: Path) -> np.ndarray:
    """A shard as an (n, seq_len) int32 array backed by the memory-mapped file (no copy)."""
    # Not closed here: the arrays below are views into the mapping, which lives as long as they do.
    source = pa.memory_map(str(path), "r")
    try:
        table = pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:  # the IPC file format of older tokens folders
        source.seek(0)
        table = pa.ipc.open_file(source).read_all()
    column = table.column("input_ids").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.int32)
    values = column.values.to_numpy(zero_copy_only=True)
    return values.reshape(len(column), -1)


class PackedSequences:
    """Map-style dataset over the shards: ``ds[i]`` is sequence ``i`` as an int64 numpy array.

    Implements ``__len__``/``__getitem__``, which is all ``torch.utils.data`` needs, without importing torch
    here. Shards are memory-mapped, so a large token set costs no RAM until it is read.
    """

    def __init__(self, tokens_dir: Path) -> None:
        self.shards = [_read_rows(p) for p in shard_paths(tokens_dir)]
        lengths = {s.shape[1] for s in self.shards if len(s)}
        if len(lengths) > 1:
            raise ValueError(f"shards in {tokens_dir} have different sequence lengths: {sorted(lengths)}")
        self.seq_len = lengths.pop() if lengths else 0
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} out of range ({len(self)} sequences)")
        index %= len(self)
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.shards[shard][index - self.starts[shard]].astype(np.int64)


def iter_sequences(tokens_dir: Path) -> Iterator[list[int]]:
    """Every packed sequence, in shard order, as a list of token ids."""
    for path in shard_paths(tokens_dir):
        yield from _read_rows(path).tolist()
