"""lucidgrad.onnx: read ONNX models and run them as lucidgrad Tensor graphs."""
