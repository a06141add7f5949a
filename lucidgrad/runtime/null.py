"""NULL: allocates nothing real and runs nothing, but goes through the whole pipeline and reports a modelled time
(bytes over a nominal bandwidth plus FLOPs over a nominal rate), so scheduling and codegen can be measured alone.
The model is its clock: every kernel and copy advances it, and its timing events read it."""
from __future__ import annotations
from lucidgrad.device import Allocator, Compiler, Compiled
from lucidgrad.renderer.c import CRenderer

class ModelClock:
  BANDWIDTH, FLOP_RATE = 100e9, 1e12  # the modelled machine
  now = 0.0                           # modelled seconds of work done on NULL devices so far
  @classmethod
  def advance(cls, flops: int, nbytes: int) -> float:
    """The modelled seconds of this much work, added to the clock."""
    cls.now += (dt := nbytes / cls.BANDWIDTH + flops / cls.FLOP_RATE)
    return dt

class NullAllocator(Allocator):
  def _alloc(self, nbytes: int): return None
  def copyin(self, raw, src: memoryview): ModelClock.advance(0, len(src))
  def copyout(self, dest: memoryview, raw): ModelClock.advance(0, len(dest))
  def transfer(self, dest_raw, src_raw, nbytes: int, src: Allocator): ModelClock.advance(0, nbytes)

class NullCompiler(Compiler):
  """Nothing to compile; no disk cache, of binaries or of programs: NULL is there to measure codegen."""
  key = "null"
  disk_cached = False
  def compile(self, src: str) -> bytes: return src.encode()
  def compile_timed(self, src: str) -> tuple[bytes, float | None]: return self.compile(src), None  # never on disk

class NullProgram:
  def __init__(self, name: str, lib: bytes, spec=None, **_): self.name, self.spec = name, spec
  def __call__(self, *bufs, global_size=None, local_size=None, wait=True) -> float:
    return ModelClock.advance(self.spec.flops, self.spec.mem_bytes) if self.spec is not None else 0.0

class NullDevice(Compiled):
  def record_event(self) -> float: return ModelClock.now

def make_device(name: str) -> Compiled: return NullDevice(name, NullAllocator(), CRenderer(), NullCompiler(), NullProgram)
