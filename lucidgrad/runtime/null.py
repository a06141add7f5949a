"""NULL: allocates nothing real and runs nothing, but goes through the whole pipeline and reports a modelled time
(bytes over a nominal bandwidth plus FLOPs over a nominal rate), so scheduling and codegen can be measured alone."""
from __future__ import annotations
from lucidgrad.device import Allocator, Compiler, Compiled
from lucidgrad.renderer.c import CRenderer

class NullAllocator(Allocator):
  def _alloc(self, nbytes: int): return None
  def copyin(self, raw, src: memoryview): pass
  def copyout(self, dest: memoryview, raw): pass

class NullCompiler(Compiler):
  key = "null"
  def compile(self, src: str) -> bytes: return src.encode()
  def compile_cached(self, src: str) -> bytes: return self.compile(src)

class NullProgram:
  BANDWIDTH, FLOP_RATE = 100e9, 1e12  # the modelled machine
  def __init__(self, name: str, lib: bytes, spec=None, **_): self.name, self.spec = name, spec
  def __call__(self, *bufs, global_size=None, local_size=None, wait=True) -> float:
    return (self.spec.mem_bytes / self.BANDWIDTH + self.spec.flops / self.FLOP_RATE) if self.spec else 0.0

def make_device(name: str) -> Compiled: return Compiled(name, NullAllocator(), CRenderer(), NullCompiler(), NullProgram)
