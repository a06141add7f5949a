"""lucidgrad: a small deep-learning framework. A lazy Tensor, one UOp IR, fused kernels compiled for the CPU."""
from lucidgrad.tensor import Tensor, no_grad
from lucidgrad.dtype import dtypes, DType
from lucidgrad.device import Device
from lucidgrad.helpers import Context, GlobalCounters, getenv, DEBUG
from lucidgrad.engine.jit import jit, JitError
__all__ = ["Tensor", "no_grad", "dtypes", "DType", "Device", "Context", "GlobalCounters", "getenv", "DEBUG", "jit", "JitError"]
