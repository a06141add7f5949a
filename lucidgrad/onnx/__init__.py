"""lucidgrad.onnx: read ONNX models and run them as lucidgrad Tensor graphs."""
from lucidgrad.onnx.proto import OnnxDecodeError
from lucidgrad.onnx.model import load_model, load_tensor
from lucidgrad.onnx.runner import OnnxRunner, run

__all__ = ["OnnxDecodeError", "OnnxRunner", "load_model", "load_tensor", "run"]
