"""FSDP for the CPT loop: torch's ``fully_shard`` (FSDP2), full or hybrid, on GPUs and on CPU (gloo).

Why not accelerate's FSDP plugin: accelerate turns FSDP off when no GPU is present, so that path could never
be exercised on a CPU machine; torch's FSDP2 runs the same code on CUDA/NCCL and CPU/gloo. Accelerate keeps
the rest (process group, gradient accumulation, RNG state in checkpoints).

- ``full``: weights, gradients and optimizer state sharded over every process (a 1-D mesh);
- ``hybrid``: sharded within a node, replicated across nodes (a 2-D mesh ``(nodes, gpus per node)``), so
  the all-gathers stay on the node's fast links.

Each decoder layer is its own FSDP unit (gathered just before it runs, freed after), and the root holds the
embeddings, final norm and lm_head. Under bf16 the gathered weights are cast to bf16 for compute while the
sharded master weights, gradient reduction and optimizer stay in float32.

A sharded model's state dict is a set of DTensor shards: checkpoints go through
``torch.distributed.checkpoint`` (each rank writes its shards), and the final model is gathered into one
full state dict on rank 0 (``full_state_dict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DCP_FOLDER = "sharded"


def decoder_layers(model) -> list:
    """The repeated transformer blocks of a causal LM (Llama, Mistral, Qwen2, GPT-2 style)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return list(obj)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} to shard")


def device_mesh(device_type: str, world: int, nodes: int, sharding: str):
    from torch.distributed.device_mesh import init_device_mesh

    if sharding == "hybrid" and nodes > 1:
        if world % nodes:
            raise ValueError(f"hybrid sharding needs the same processes on every node: {world} over {nodes} nodes")
        return init_device_mesh(device_type, (nodes, world // nodes), mesh_dim_names=("replicate", "shard"))
    return init_device_mesh(device_type, (world,), mesh_dim_names=("shard",))


def shard_model(model, *, device, world: int, nodes: int, sharding: str, bf16: bool):
    """Wrap ``model`` with ``fully_shard`` per decoder layer and at the root; returns the same module."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = device_mesh(device.type, world, nodes, sharding)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
    model.to(device)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_state_dict(model) -> dict:
    """The whole model's state dict on CPU, gathered from the shards (complete on rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(model, optimizer, folder: Path) -> None:
    """Every rank writes its shards of the model and optimizer state under ``folder/sharded``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(Path(folder) / DCP_FOLDER))


def load_sharded(model, optimizer, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_sd, "optimizer": optim_sd}
    dcp.load(state, checkpoint_id=str(Path(folder) / DCP_FOLDER))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def local_value(x) -> float:
    """A float from a tensor that may be a DTensor (a sharded grad norm)."""
    if x is None:
        return float("nan")
    full = getattr(x, "full_tensor", None)
    return float(full() if full else x)
