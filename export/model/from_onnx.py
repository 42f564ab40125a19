"""Weights back from an exported network ONNX, for a model whose checkpoint is gone.

The exporter folds each batch norm into the convolution before it, so the ONNX holds one
weight and bias per convolution. They are put back in the order the network calls its
convolutions (the trace's order), shapes checked, and each batch norm after a convolution
is set to the identity plus the folded bias. The rebuilt model then computes what the ONNX
computes, up to float32 rounding, and exports again to the same graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from export.model import ModelConfig, build_model

__all__ = ["model_from_onnx"]


def _conv_weights(path: Path) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any] | None]]:
    graph = onnx.load(str(path)).graph
    initial = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    # Small graphs may carry folded weights as Constant nodes rather than initializers.
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            initial[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        if node.op_type == "Identity" and node.input[0] in initial:  # equal weights, shared
            initial[node.output[0]] = initial[node.input[0]]
    convs = []
    for node in graph.node:
        if node.op_type == "Conv":
            bias = initial[node.input[2]] if len(node.input) > 2 else None
            convs.append((initial[node.input[1]], bias))
    return convs


def _call_order(model: nn.Module, config: ModelConfig) -> list[tuple[nn.Conv2d, nn.Module | None]]:
    """Each convolution in the order the forward pass calls it, with the norm it feeds."""
    called: list[nn.Conv2d] = []
    hooks = [
        module.register_forward_hook(lambda m, _i, _o: called.append(m))
        for module in model.modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, config.in_channels, 64, 64))
    for hook in hooks:
        hook.remove()
    following: dict[int, nn.Module] = {}
    for parent in model.modules():
        children = list(parent.children())
        for first, second in zip(children, children[1:], strict=False):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                following[id(first)] = second
    return [(conv, following.get(id(conv))) for conv in called]


def model_from_onnx(path: Path, config: ModelConfig) -> nn.Module:
    """A ``config`` network (eval mode) carrying the weights of the network ONNX at ``path``."""
    model = build_model(config).eval()
    order = _call_order(model, config)
    weights = _conv_weights(path)
    if len(order) != len(weights):
        raise ValueError(f"{path} has {len(weights)} convolutions, the model {len(order)}")
    for (conv, norm), (weight, bias) in zip(order, weights, strict=True):
        if tuple(conv.weight.shape) != weight.shape:
            raise ValueError(f"convolution shape {tuple(conv.weight.shape)} != {weight.shape}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.array(weight)))
            zero = np.zeros(weight.shape[0], dtype=np.float32)
            folded = torch.from_numpy(np.array(zero if bias is None else bias))
            if isinstance(norm, nn.BatchNorm2d):
                norm.weight.fill_(1.0)
                norm.bias.copy_(folded)
                norm.running_mean.zero_()  # type: ignore[union-attr]
                norm.running_var.fill_(1.0 - norm.eps)  # type: ignore[union-attr]
            elif conv.bias is not None:
                conv.bias.copy_(folded)
            elif bias is not None and np.any(bias):
                raise ValueError("the ONNX has a bias where the model has neither bias nor norm")
    return model
