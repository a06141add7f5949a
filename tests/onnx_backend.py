"""An onnx.backend Backend over lucidgrad's OnnxRunner, for ONNX's own backend test suite (tests/test_onnx_backend.py,
python -m lucidgrad.onnx.conformance), and the one list of cases expected to fail, each with its reason."""
from __future__ import annotations
import re
from typing import Any
import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep
from lucidgrad.onnx.runner import OnnxRunner, to_numpy

class LucidBackendRep(BackendRep):
  """A prepared model: run(inputs) takes a dict by name, or a list: the model's inputs in order, all of them when the
  list is that long (initializers listed as inputs then take the given values), else those without an initializer."""
  def __init__(self, runner: OnnxRunner): self.runner = runner
  def run(self, inputs: Any, **kwargs: Any) -> tuple:
    if isinstance(inputs, dict): feed = dict(inputs)
    else:
      if isinstance(inputs, np.ndarray): inputs = [inputs]
      all_inputs = self.runner.graph.input
      feed = {vi.name: x for vi, x in zip(all_inputs if len(inputs) == len(all_inputs) else self.runner.inputs, inputs)}
    out = self.runner(feed)
    return tuple(to_numpy(out[name]) for name in self.runner.outputs)

class LucidBackend(Backend):
  """onnx.backend.base.Backend for lucidgrad (CPU only): the model is serialised and read back by our own reader."""
  @classmethod
  def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> LucidBackendRep:
    return LucidBackendRep(OnnxRunner(model.SerializeToString()))
  @classmethod
  def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
    return cls.prepare(model, device).run(inputs)
  @classmethod
  def supports_device(cls, device: str) -> bool: return device == "CPU"

# Cases expected to fail: a regex on the test name (without the _cpu suffix) -> why. The one place to list them; a case
# that starts passing shows as an unexpected success, one that starts failing as a failure. The block between the
# markers is rewritten by `python -m lucidgrad.onnx.conformance --write-xfail` from a full run (reasons already given
# here are kept; new ones are the error's first line).
# BEGIN XFAIL
XFAIL: dict[str, str] = {
}
# END XFAIL

def xfail_reason(name: str) -> str | None:
  """The reason a case (name with or without _cpu) is expected to fail, or None."""
  base = name[:-4] if name.endswith("_cpu") else name
  for pat, why in XFAIL.items():
    if re.fullmatch(pat, base): return why
  return None
