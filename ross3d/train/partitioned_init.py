"""`model.init` straight into ZeRO-3 partitions: the model is built under `deepspeed.zero.Init`, so each module's
parameters are partitioned across the ranks as soon as the module is constructed; then, module by module, the
parameters are gathered, rank 0 copies the stored tensors into them from the safetensors file (read one tensor at a
time from its memory map) and they are partitioned again. No rank ever holds more than one module's full
parameters, where a plain load puts the whole model on every rank's CPU first (7B in bf16: 15 GB per rank, 122 GB
for eight ranks on one node). Buffers are not partitioned: every rank copies them."""

from __future__ import annotations

from pathlib import Path

import torch

from ross3d.model.checkpoint import LoadReport, match_state, read_config, weights_file
from ross3d.model.zero3 import full_shape, gathered


def load_partitioned(folder: str | Path, ds_config: dict):
    """(model, report) for a ross3d model folder with every parameter ZeRO-3-partitioned under `ds_config`.
    Every rank calls this; the shapes are checked on every rank before anything is gathered."""
    import deepspeed
    from safetensors import safe_open
    # imported before zero.Init patches tensor creation: importing Qwen2 imports torch._dynamo, which refuses to
    # load when torch.Tensor.__new__ is patched (a fresh process fails inside the Ross3D constructor otherwise)
    from transformers import Qwen2ForCausalLM  # noqa: F401

    from ross3d.model.ross3d import Ross3D

    folder = Path(folder)
    config = read_config(folder)
    path = weights_file(folder)
    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = Ross3D(config)
    state = model.state_dict(keep_vars=True)
    report = LoadReport()
    with safe_open(str(path), framework="pt") as stored:
        shapes = {key: tuple(stored.get_slice(key).get_shape()) for key in stored.keys()}
        keys = set(match_state(config, {k: tuple(full_shape(v)) for k, v in state.items()}, shapes, report))
        writer = torch.distributed.get_rank() == 0
        done: set[int] = set()
        for prefix, module in model.named_modules():
            own = [(name, p) for name, p in module.named_parameters(prefix=prefix, recurse=False)
                   if name in keys and id(p) not in done]
            if not own:
                continue
            done.update(id(p) for _, p in own)
            with gathered([p for _, p in own]), torch.no_grad():
                if writer:
                    for name, p in own:
                        p.copy_(stored.get_tensor(name))
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in keys:
                    buffer.copy_(stored.get_tensor(name))
    return model, report
