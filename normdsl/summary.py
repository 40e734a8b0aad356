"""Network → a Keras-style summary table, or the same figures as JSON. No TensorFlow involved.

Counting convention (Keras reports neither):
- MACs: multiply-accumulates per sample of Conv2D (out_h·out_w·k_h·k_w·(C_in/groups)·filters),
  DepthwiseConv2D (out_h·out_w·k_h·k_w·C_in·mult), SeparableConv2D (that plus out_h·out_w·C_in·mult·filters)
  and Dense (positions·inputs·units); bias additions, normalization, activation, pooling, Add and
  Concatenate are not counted.
- FLOPs = 2 × MACs.
- Activation memory: the elements of each layer's output per sample × 4 bytes (float32); the total
  is their sum, i.e. what a forward pass keeps for backpropagation, not peak inference memory.
"""

from __future__ import annotations

import json

from normdsl.layers import Shape
from normdsl.network import Network

BYTES_PER_VALUE = 4  # float32


def batch_shape(shape: Shape) -> str:
    """A shape as Keras prints it, with the batch dimension: (None, 216, 216, 256)."""
    return "(None, " + ", ".join(map(str, shape)) + ")"


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    raise AssertionError


def text(network: Network) -> str:
    """The summary as Keras prints it, plus MACs and activation-memory columns."""
    header = ("Layer (type)", "Output Shape", "Param #", "MACs", "Act. memory")
    rows = [
        (
            f"{layer.text} ({layer.keras_class})",
            batch_shape(layer.output_shape),
            f"{layer.params:,}",
            f"{layer.macs:,}",
            _size(layer.activations * BYTES_PER_VALUE),
        )
        for layer in network.layers
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return (
            " "
            + "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )

    rule = "─" * (sum(widths) + 2 * len(widths))
    activations = sum(layer.activations for layer in network.layers)
    out = [f'Model: "{network.name}"  (input {batch_shape(network.input_shape)})', rule, line(header), rule]
    out += [line(row) for row in rows] + [rule]
    out += [
        f" Total params: {network.params:,} ({_size(network.params * BYTES_PER_VALUE)})",
        f" Trainable params: {network.trainable:,} ({_size(network.trainable * BYTES_PER_VALUE)})",
        f" Non-trainable params: {network.non_trainable:,} ({_size(network.non_trainable * BYTES_PER_VALUE)})",
        f" MACs per sample: {network.macs:,} (FLOPs: {2 * network.macs:,})",
        f" Activation memory per sample: {_size(activations * BYTES_PER_VALUE)} (float32)",
    ]
    return "\n".join(out)


def one_line(network: Network) -> str:
    return f"{network.params:,} params ({network.trainable:,} trainable, {network.non_trainable:,} non-trainable), output {batch_shape(network.output_shape)}"


def as_json(network: Network) -> str:
    layers = [
        {
            "text": layer.text,
            "kind": layer.kind,
            "keras_class": layer.keras_class,
            "line": layer.span.line,
            "column": layer.span.column,
            "output_shape": [None, *layer.output_shape],
            "params": layer.params,
            "trainable": layer.trainable,
            "non_trainable": layer.non_trainable,
            "macs": layer.macs,
            "flops": layer.flops,
            "activations": layer.activations,
        }
        for layer in network.layers
    ]
    return json.dumps(
        {
            "name": network.name,
            "input_shape": [None, *network.input_shape],
            "output_shape": [None, *network.output_shape],
            "params": network.params,
            "trainable": network.trainable,
            "non_trainable": network.non_trainable,
            "macs": network.macs,
            "flops": 2 * network.macs,
            "activation_bytes": BYTES_PER_VALUE * sum(layer.activations for layer in network.layers),
            "layers": layers,
            "warnings": [
                {"message": d.message, "line": d.span.line, "column": d.span.column, "hint": d.hint}
                for d in network.warnings
            ],
        },
        indent=2,
    )
