"""CPU offload of decoder layers with prefetch overlapped with compute.

The heterogeneous-memory idea of Colossal-AI (Bian et al., arXiv:2110.14883, "Gemini"): weights
that do not fit the device budget live in (pinned) CPU memory and are streamed in when needed.
Unlike accelerate's ``device_map`` offload, which copies a layer's weights only when that layer
starts (no overlap), the copy of the *next* offloaded layer is issued on a side CUDA stream while
this layer computes, and the compute stream waits on an event only when it needs the weights.

Layout rule: everything that is not a decoder layer (embeddings, final norm, LM head) and the
first layers that fit in the device budget stay resident on the device; the remaining layers are
offloaded. Decoder layers are found at ``model.model.layers`` (Llama-like and zoo models) or
``model.transformer.h`` (GPT-2).

On a CPU "device" the same code path runs with a simulated budget: the "copy" is a clone and
there are no streams or events, so the output is bit-identical and the hooks are tested in CI.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string like ``"2GiB"``, ``"500MB"``, ``"1.5 gb"``, ``"1024"``.

    Raises:
        ValueError: for a negative or unparsable size.
    """
    if isinstance(size, bool):
        raise ValueError(f"size must be an int or a string like '2GiB', got {size!r}")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"size must be non-negative, got {size}")
        return size
    match = _SIZE_RE.match(size)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot parse size {size!r}; use e.g. '2GiB', '500MB' or an int of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers: ``model.model.layers`` or ``model.transformer.h``.

    Raises:
        ValueError: if neither exists.
    """
    for outer, inner in (("model", "layers"), ("transformer", "h")):
        parent = getattr(model, outer, None)
        layers = getattr(parent, inner, None) if parent is not None else None
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(
        f"{type(model).__name__} has neither model.model.layers nor model.transformer.h; "
        "cannot offload its layers"
    )


def _module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors_of(module).values())


def _tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        tensors[name] = param.data
    for name, buffer in module.named_buffers():
        tensors[name] = buffer
    return tensors


def _assign(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    parameter = owner._parameters.get(leaf)
    if parameter is not None:
        parameter.data = tensor
    else:
        owner._buffers[leaf] = tensor


def _budget_for(max_memory: dict[str, int | str], device: torch.device) -> int:
    keys = [str(device), device.type]
    if device.index is not None:
        keys.append(str(device.index))
    elif device.type == "cuda":
        keys += ["cuda:0", "0"]
    for key in keys:
        for given, value in max_memory.items():
            if str(given) == key:
                return parse_size(value)
    raise ValueError(f"max_memory {max_memory!r} has no entry for device {device} (keys {keys})")


@dataclass
class _OffloadedLayer:
    """One offloaded layer: its host copies and the device copies while they are in flight."""

    layer: nn.Module
    host: dict[str, torch.Tensor]
    device_copies: dict[str, torch.Tensor] | None = None
    ready: torch.cuda.Event | None = None
    hooks: list[Any] = field(default_factory=list)


class LayerStreamer:
    """Streams offloaded layers onto the device, one layer ahead of the compute.

    Installed by :func:`apply_cpu_offload`; kept on the model as ``model.layer_streamer`` so that
    callers can :meth:`remove` it.
    """

    def __init__(self, layers: list[nn.Module], device: torch.device) -> None:
        self.device = device
        self.use_cuda = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if self.use_cuda else None
        self.offloaded: list[_OffloadedLayer] = []
        for layer in layers:
            host = {}
            for name, tensor in _tensors_of(layer).items():
                cpu = tensor.detach().to("cpu")
                host[name] = cpu.pin_memory() if self.use_cuda else cpu
                _assign(layer, name, host[name])
            self.offloaded.append(_OffloadedLayer(layer, host))
        self._index = {id(entry.layer): i for i, entry in enumerate(self.offloaded)}
        for index, entry in enumerate(self.offloaded):
            entry.hooks.append(entry.layer.register_forward_pre_hook(self._make_pre_hook(index)))
            entry.hooks.append(entry.layer.register_forward_hook(self._make_post_hook(index)))

    def prefetch(self, index: int) -> None:
        """Start copying offloaded layer ``index`` to the device (no-op if already in flight)."""
        entry = self.offloaded[index]
        if entry.device_copies is not None:
            return
        if self.copy_stream is None:
            # Simulated device: the "transfer" is a copy, so the code path matches CUDA's.
            entry.device_copies = {n: t.clone() for n, t in entry.host.items()}
            return
        # No wait on the compute stream: freed device copies were record_stream()-ed on it, so
        # the caching allocator does not hand their memory to this copy before compute is done.
        with torch.cuda.stream(self.copy_stream):
            entry.device_copies = {
                n: t.to(self.device, non_blocking=True) for n, t in entry.host.items()
            }
            entry.ready = torch.cuda.Event()
            entry.ready.record(self.copy_stream)

    def before(self, layer: nn.Module) -> None:
        """Make ``layer``'s weights usable on the device (no-op for a resident layer).

        The hooks call this; code that runs a layer's submodules without calling the layer
        itself (``models_zoo.fast_decode``) calls it and :meth:`after` explicitly.
        """
        index = self._index.get(id(layer))
        if index is not None:
            self._load(index)

    def after(self, layer: nn.Module) -> None:
        """Release ``layer``'s device copies (no-op for a resident layer)."""
        index = self._index.get(id(layer))
        if index is not None:
            self._release(index)

    def _make_pre_hook(self, index: int) -> Any:
        def pre_hook(module: nn.Module, args: Any) -> None:
            self._load(index)

        return pre_hook

    def _load(self, index: int) -> None:
        module = self.offloaded[index].layer
        self.prefetch(index)
        entry = self.offloaded[index]
        assert entry.device_copies is not None
        if entry.ready is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(entry.ready)
            for tensor in entry.device_copies.values():
                # Allocated on the copy stream, used on the compute stream: tell the caching
                # allocator so the memory is not reused before the compute is done with it.
                tensor.record_stream(compute)
        for name, tensor in entry.device_copies.items():
            _assign(module, name, tensor)
        # Overlap: the next offloaded layer's copy runs while this layer computes.
        self.prefetch((index + 1) % len(self.offloaded))

    def _make_post_hook(self, index: int) -> Any:
        def post_hook(module: nn.Module, args: Any, output: Any) -> None:
            self._release(index)

        return post_hook

    def _release(self, index: int) -> None:
        entry = self.offloaded[index]
        if entry.device_copies is None:
            return
        for name, tensor in entry.host.items():
            _assign(entry.layer, name, tensor)
        entry.device_copies = None
        entry.ready = None

    def remove(self) -> None:
        """Remove the hooks; offloaded layers stay on the CPU."""
        for entry in self.offloaded:
            for hook in entry.hooks:
                hook.remove()
            entry.hooks.clear()


def apply_cpu_offload(
    model: nn.Module, *, max_memory: dict[str, int | str], device: torch.device | str
) -> nn.Module:
    """Keep as many decoder layers on ``device`` as ``max_memory`` allows; stream in the rest.

    Non-layer weights are placed on the device first, then layers in order until the budget is
    used; the remaining layers stay in CPU memory (pinned when ``device`` is CUDA) and are copied
    in by forward pre-hooks, the next one's copy overlapping this one's compute (module
    docstring). The output equals the unoffloaded model's.

    Args:
        model: a model with ``model.model.layers`` or ``model.transformer.h``; modified in place.
        max_memory: budget per device, e.g. ``{"cuda": "2GiB"}``, ``{"cuda:0": 500_000_000}``,
            ``{"cpu": "100MB"}``; the entry for ``device`` is used.
        device: the compute device.

    Returns:
        The same ``model``, with ``model.layer_streamer`` set (``None`` if nothing is offloaded).

    Raises:
        ValueError: for an unknown layout, a missing budget entry, or a budget smaller than the
            non-layer weights.
    """
    device = torch.device(device)
    budget = _budget_for(max_memory, device)
    layers = find_decoder_layers(model)
    layer_ids = {id(m) for layer in layers for m in layer.modules()}
    resident_bytes = 0
    for module in model.modules():
        if id(module) in layer_ids:
            continue
        for name, tensor in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            resident_bytes += tensor.numel() * tensor.element_size()
            _assign(module, name, tensor.detach().to(device))
    if resident_bytes > budget:
        raise ValueError(
            f"budget {budget} bytes for {device} is smaller than the non-layer weights "
            f"({resident_bytes} bytes)"
        )
    offloaded: list[nn.Module] = []
    for layer in layers:
        size = _module_bytes(layer)
        if not offloaded and resident_bytes + size <= budget:
            layer.to(device)
            resident_bytes += size
        else:
            offloaded.append(layer)
    streamer = LayerStreamer(offloaded, device) if offloaded else None
    setattr(model, "layer_streamer", streamer)  # noqa: B010 - a plain attribute, not a submodule
    logger.info(
        "apply_cpu_offload: %d of %d layers resident on %s (%d bytes), %d offloaded",
        len(layers) - len(offloaded),
        len(layers),
        device,
        resident_bytes,
        len(offloaded),
    )
    return model
