"""Builds a small real ONNX model: a linear classifier of 4 measurements into 3 classes with a
softmax (the shape of the iris flowers problem), with fixed weights, and prints its sha256 and
size for the registry.

Usage: python make_model.py OUTPUT.onnx      (needs the onnx package)
"""

import hashlib
import sys

import onnx
from onnx import TensorProto, helper

WEIGHTS = [  # 4 inputs x 3 classes
    [0.42, 0.05, -0.47],
    [0.96, -0.33, -0.63],
    [-1.18, 0.07, 1.11],
    [-1.07, -0.21, 1.28],
]
BIAS = [0.25, 1.10, -1.35]


def build():
    flat = [w for row in WEIGHTS for w in row]
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["measurements", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        name="flower-classifier",
        inputs=[helper.make_tensor_value_info("measurements", TensorProto.FLOAT, ["batch", 4])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            helper.make_tensor("weights", TensorProto.FLOAT, [4, 3], flat),
            helper.make_tensor("bias", TensorProto.FLOAT, [3], BIAS),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="modelfleet-example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python make_model.py OUTPUT.onnx")
    data = build().SerializeToString()
    with open(sys.argv[1], "wb") as output:
        output.write(data)
    print(f"{sys.argv[1]} sha256={hashlib.sha256(data).hexdigest()} size_bytes={len(data)}")


if __name__ == "__main__":
    main()
