"""The PYTHON target: the linear program itself, serialised, for runtime/python.py to interpret. It is GPU-style
(thread ids instead of output loops) so the GPU path is exercised without a GPU."""
from __future__ import annotations
import base64, pickle
from lucidgrad.uop.ops import UOp
from lucidgrad.renderer import Renderer, pm_half_via_float32, MMA_16816

class PythonRenderer(Renderer):
  device = "PYTHON"
  has_local = True
  local_max = 1024
  shared_max = 48 * 1024
  vector_bytes = 16
  vector_alu = True  # the interpreter applies an op to every lane
  pre_render = pm_half_via_float32
  tensor_cores = MMA_16816  # emulated per warp, as the CUDA target runs them (runtime/python.py _wmma)
  def render(self, name: str, uops: list[UOp]) -> str: return base64.b64encode(pickle.dumps((name, uops))).decode()
