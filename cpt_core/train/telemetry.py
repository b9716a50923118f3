"""Per-step training telemetry: model FLOPs utilisation, time waiting for data, TensorBoard.

MFU is ``(6N + 12*L*H*Q*T) * tokens/s / peak``: N parameters, L layers, H heads of size Q, T the sequence
length (the PaLM paper's count of useful FLOPs per token; recomputation under activation checkpointing is
not counted). The peak is the detected device's: the dense bf16 (or fp32/TF32) figure of known NVIDIA parts
from their datasheets, and on a CPU a measured one (the best of a few large float32 matrix products on the
threads torch uses), since a CPU's nominal peak depends on vector units and clocks nobody reports reliably.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Dense (not sparse) tensor-core TFLOP/s by device name fragment: bf16, then fp32 (TF32 for Ampere and later).
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 494.0),
    "H100": (989.0, 494.0),
    "GH200": (989.0, 494.0),
    "A100": (312.0, 156.0),
    "L40S": (362.0, 183.0),
    "L4": (121.0, 60.0),
    "A10G": (70.0, 35.0),
    "RTX 4090": (165.0, 83.0),
}


def cpu_peak_flops(threads: int | None = None, size: int = 1024, repeats: int = 3) -> float:
    """The best float32 FLOP/s of ``size``-square matrix products on this CPU (a measured peak)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def device_peak_flops(device, bf16: bool) -> tuple[float | None, str]:
    """Peak FLOP/s of ``device`` and where the figure comes from (``None`` for an unknown GPU)."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, (bf16_peak, fp32_peak) in GPU_PEAK_TFLOPS.items():
            if fragment in name:
                return (bf16_peak if bf16 else fp32_peak) * 1e12, f"{name} datasheet ({'bf16' if bf16 else 'tf32'})"
        return None, f"{name}: peak unknown"
    return cpu_peak_flops(), "measured float32 matmul on this CPU"


def flops_per_token(config, seq_len: int) -> float:
    """``6N + 12*L*H*Q*T`` for a decoder config (N from the shape, so tied embeddings count once)."""
    from cpt_core.train.plan import shape_from_hf_config

    return shape_from_hf_config(config).flops_per_token(seq_len)


class StepTimer:
    """Splits each optimizer step's wall time into waiting for data and computing."""

    def __init__(self) -> None:
        self.data_s = 0.0
        self.total_s = 0.0
        self._started = 0.0

    def start_step(self) -> None:
        self._started = time.perf_counter()

    def data(self, fetch):
        started = time.perf_counter()
        out = fetch()
        self.data_s += time.perf_counter() - started
        return out

    def end_step(self) -> None:
        self.total_s += time.perf_counter() - self._started

    def data_fraction(self) -> float | None:
        return round(self.data_s / self.total_s, 4) if self.total_s > 0 else None


class TensorBoard:
    """Scalars to ``<output>/tensorboard`` on the main process (a no-op when tensorboard is missing)."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return
        self.writer = SummaryWriter(log_dir=str(folder))

    def log(self, row: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{key}", value, step)
        for group, lr in (row.get("lr_groups") or {}).items():
            self.writer.add_scalar(f"lr/{group}", lr, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
