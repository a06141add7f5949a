"""CUDA: NVIDIA GPUs through NVIDIA's `cuda-bindings` (the driver API and NVRTC), imported when a CUDA device is first
opened, so installing or testing lucidgrad needs nothing of CUDA (`pip install 'lucidgrad[cuda]'` adds it).

One primary context per device (`CUDA`, `CUDA:1`, ...) and one stream on it, where every kernel and copy of the device
is queued in order. Kernels are renderer/cuda.py's CUDA C, compiled by NVRTC to a cubin for the device's own
architecture (read from the device) and kept on disk like CPU binaries. Memory is plain cuMemAlloc, kept by size for
reuse (device.Allocator): a buffer freed while a queued kernel still reads it is handed out again only to work queued
after that kernel on the same stream. Host copies stage through pinned memory. A launch that is timed (DEBUG=2,
PROFILE, BEAM's timing) records events around it on the stream and waits for the second; others are only queued."""
from __future__ import annotations
import ctypes, functools, glob, os, site, threading, weakref
from lucidgrad.device import Allocator, Compiler, Compiled
from lucidgrad.renderer.cuda import CUDARenderer
from lucidgrad.renderer import WGMMA_64N16, MMA_16816

@functools.cache
def _api():
  """cuda-bindings' driver and NVRTC modules, or a RuntimeError that says what is missing."""
  try: from cuda.bindings import driver, nvrtc
  except ImportError as e:
    raise RuntimeError(f"the CUDA device needs NVIDIA's cuda-bindings package (pip install 'lucidgrad[cuda]'): {e}") from None
  return driver, nvrtc

def _check(ret, what: str):
  """A cuda-bindings result, (status, *values), as its values; a failed status raises naming the call and the error."""
  status, *values = ret
  if int(status) != 0:
    driver, nvrtc = _api()
    if isinstance(status, nvrtc.nvrtcResult): text = nvrtc.nvrtcGetErrorString(status)[1]
    else: text = driver.cuGetErrorName(status)[1] + b": " + (driver.cuGetErrorString(status)[1] or b"")
    raise RuntimeError(f"CUDA {what} failed: {text.decode(errors='replace')}")
  return values[0] if len(values) == 1 else tuple(values)

# the device whose context this thread made current last: switching costs a driver call, so it is made only on a change
# (per thread, as CUDA's current context is: a second thread starts with none)
_current = threading.local()

class CUDAAllocator(Allocator):
  """Device memory as its address (an int). Host copies go through a pinned staging buffer, which the DMA engine reads
  and writes at full speed (pageable memory is staged by the driver, a copy more). A copy in returns once its bytes
  are on their way from the staging buffer; a copy out waits for everything queued before it."""
  def __init__(self, dev: CUDADevice):
    super().__init__()
    self.dev, self.staging, self.staging_bytes = dev, None, 0
  def _alloc(self, nbytes: int) -> int:
    driver, _ = _api()
    self.dev.activate()
    status, ptr = driver.cuMemAlloc(nbytes)
    if status == driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
      raise MemoryError(f"{self.dev.name}: out of memory asking for {nbytes} bytes")  # the base class frees its cache and asks again
    return int(_check((status, ptr), f"cuMemAlloc of {nbytes} bytes"))
  def free_cache(self):
    driver, _ = _api()
    self.dev.synchronize()  # queued kernels may still use memory the cache holds
    for kept in self.cache.values():
      for ptr in kept: _check(driver.cuMemFree(ptr), "cuMemFree")
    super().free_cache()
  def _stage(self, nbytes: int) -> int:
    """A pinned host buffer of at least nbytes (grown by doubling; the stream is idle whenever it is replaced)."""
    driver, _ = _api()
    if nbytes > self.staging_bytes:
      self.dev.synchronize()
      if self.staging is not None: _check(driver.cuMemFreeHost(self.staging), "cuMemFreeHost")
      self.staging_bytes = max(nbytes, 2 * self.staging_bytes, 1 << 20)
      self.staging = int(_check(driver.cuMemHostAlloc(self.staging_bytes, 0), f"cuMemHostAlloc of {self.staging_bytes} bytes"))
    return self.staging
  def copyin(self, raw: int, src: memoryview):
    driver, _ = _api()
    if not (n := len(src)): return
    self.dev.activate()
    self.dev.synchronize()  # the staging buffer may still be read by the copy before this one
    stage = self._stage(n)
    ctypes.memmove(stage, (ctypes.c_char * n).from_buffer(src) if not src.readonly else bytes(src), n)
    _check(driver.cuMemcpyHtoDAsync(raw, stage, n, self.dev.stream), "cuMemcpyHtoDAsync")
  def copyout(self, dest: memoryview, raw: int):
    driver, _ = _api()
    if not (n := len(dest)): return
    self.dev.activate()
    stage = self._stage(n)
    _check(driver.cuMemcpyDtoHAsync(stage, raw, n, self.dev.stream), "cuMemcpyDtoHAsync")
    self.dev.synchronize()
    ctypes.memmove((ctypes.c_char * n).from_buffer(dest), stage, n)
  def transfer(self, dest_raw: int, src_raw, nbytes: int, src: Allocator):
    driver, _ = _api()
    if not isinstance(src, CUDAAllocator): return super().transfer(dest_raw, src_raw, nbytes, src)
    self.dev.activate()
    if src.dev is self.dev: _check(driver.cuMemcpyDtoDAsync(dest_raw, src_raw, nbytes, self.dev.stream), "cuMemcpyDtoDAsync")
    else:  # another GPU: the driver copies peer to peer where the two can, else through the host
      src.dev.synchronize()
      _check(driver.cuMemcpyPeerAsync(dest_raw, self.dev.context, src_raw, src.dev.context, nbytes, self.dev.stream), "cuMemcpyPeerAsync")

def _include_dirs() -> list[str]:
  """Folders holding cuda_fp16.h for NVRTC: $CUDA_HOME's or CUDA_PATH's, the usual install, or NVIDIA's pip packages."""
  roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
  found = [os.path.join(r, "include") for r in roots if r and os.path.exists(os.path.join(r, "include", "cuda_fp16.h"))]
  for sp in site.getsitepackages() + [site.getusersitepackages()]:
    found += [os.path.dirname(h) for h in glob.glob(os.path.join(sp, "nvidia", "*", "include", "cuda_fp16.h"))]
  return found[:1]

class NVRTCCompiler(Compiler):
  """CUDA C -> a cubin for one architecture. No fast math: a multiply and an add stay two roundings (--fmad=false), as
  on the CPU; codegen asks for fused multiply-adds where it wants them (fmaf)."""
  def __init__(self, arch: str):
    _, nvrtc = _api()
    self.arch = arch
    self.options = [f"--gpu-architecture={arch}", "--fmad=false", "-default-device", *[f"-I{d}" for d in _include_dirs()]]
    major, minor = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    self.key = f"nvrtc {major}.{minor} {' '.join(self.options)}"
  def compile(self, src: str) -> bytes:
    _, nvrtc = _api()
    prog = _check(nvrtc.nvrtcCreateProgram(src.encode(), b"kernel.cu", 0, [], []), "nvrtcCreateProgram")
    try:
      status = nvrtc.nvrtcCompileProgram(prog, len(self.options), [o.encode() for o in self.options])[0]
      if int(status) != 0:
        log = b" " * _check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"CUDA compile failed (NVRTC, {self.arch}):\n{log.decode(errors='replace').strip(chr(0))}\n--- source ---\n{src}")
      cubin = b" " * _check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
      _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
      return cubin
    finally: nvrtc.nvrtcDestroyProgram(prog)

class CUDAEvent:
  """A point in a device's stream; destroyed with the object."""
  def __init__(self, dev: CUDADevice):
    driver, _ = _api()
    self.dev, self.event = dev, _check(driver.cuEventCreate(0), "cuEventCreate")
    _check(driver.cuEventRecord(self.event, dev.stream), "cuEventRecord")
  def __del__(self):
    try: _api()[0].cuEventDestroy(self.event)
    except Exception: pass

class CUDAProgram:
  """A kernel loaded from its cubin into the device's context. Called with the buffers' addresses and the launch dims;
  with `wait`, it returns the seconds the kernel ran between events around it, else 0.0 at once."""
  def __init__(self, dev: CUDADevice, name: str, lib: bytes, spec=None, **_):
    driver, _ = _api()
    self.dev, self.name = dev, name
    dev.activate()
    self.module = _check(driver.cuModuleLoadData(lib), f"cuModuleLoadData of {name}")
    self.fxn = _check(driver.cuModuleGetFunction(self.module, name.encode()), f"cuModuleGetFunction {name}")
    weakref.finalize(self, _unload, self.module)
    # local memory past the 48 KiB a block declares statically is dynamic: the kernel is allowed it, each launch asks
    # (kept in the spec: one read back from the disk cache has no uops to count it from)
    self.shared = spec.launch_local_bytes if spec is not None else 0
    if self.shared:
      _check(driver.cuFuncSetAttribute(self.fxn, driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, self.shared),
             f"{name}: {self.shared} bytes of shared memory")
  def __call__(self, *bufs: int, global_size=(1,), local_size=(1,), wait=True, vals=()) -> float:
    bufs = bufs + tuple(vals)  # the Variables' values, 64-bit words after the buffers' addresses
    driver, _ = _api()
    dev = self.dev
    dev.activate()
    # the kernel's parameters: an array of pointers, each to one argument's bytes (all are device addresses)
    addrs = (ctypes.c_uint64 * len(bufs))(*bufs)
    params = (ctypes.c_void_p * len(bufs))(*[ctypes.addressof(addrs) + 8 * i for i in range(len(bufs))])
    grid, block = (*global_size, 1, 1)[:3], (*(local_size or ()), 1, 1, 1)[:3]
    if wait: start = CUDAEvent(dev)
    _check(driver.cuLaunchKernel(self.fxn, *grid, *block, self.shared, dev.stream, ctypes.addressof(params) if bufs else 0, 0),
           f"launch of {self.name} on grid {grid} x block {block}")
    return dev.event_seconds(start, CUDAEvent(dev)) if wait else 0.0

def _unload(module):
  try: _api()[0].cuModuleUnload(module)
  except Exception: pass

class CUDADevice(Compiled):
  def __init__(self, name: str):
    driver, _ = _api()
    ordinal = int(name.partition(":")[2] or 0)
    try: _check(driver.cuInit(0), "cuInit")
    except RuntimeError as e: raise RuntimeError(f"device {name} cannot be opened: no usable NVIDIA GPU and driver here ({e})") from None
    if ordinal >= (count := _check(driver.cuDeviceGetCount(), "cuDeviceGetCount")):
      raise RuntimeError(f"device {name} cannot be opened: this machine has {count} CUDA device(s)")
    self.cu_device = _check(driver.cuDeviceGet(ordinal), "cuDeviceGet")
    self.context = _check(driver.cuDevicePrimaryCtxRetain(self.cu_device), "cuDevicePrimaryCtxRetain")
    self.activate()
    attr = driver.CUdevice_attribute
    major, minor = (_check(driver.cuDeviceGetAttribute(a, self.cu_device), "cuDeviceGetAttribute")
                    for a in (attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
    self.stream = _check(driver.cuStreamCreate(0), "cuStreamCreate")
    renderer = CUDARenderer()
    # the shared memory a block may have, past the static 48 KiB by opting in (sm_90: 227 KiB): the opts' budget
    renderer.shared_max = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, self.cu_device), "cuDeviceGetAttribute")
    # Hopper (sm_90) has wgmma, in its arch-specific target sm_90a: the warpgroup cores come first, mma.sync after them
    # for what they do not take (renderer.WarpgroupCore; codegen/opt gpu_opts)
    if hopper := (major, minor) == (9, 0): renderer.tensor_cores = WGMMA_64N16 + MMA_16816
    super().__init__(name, CUDAAllocator(self), renderer, NVRTCCompiler(f"sm_{major}{minor}{'a' if hopper else ''}"), functools.partial(CUDAProgram, self))
  def activate(self):
    if getattr(_current, "dev", None) is not self:
      _check(_api()[0].cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
      _current.dev = self
  def synchronize(self):
    self.activate()
    _check(_api()[0].cuStreamSynchronize(self.stream), "cuStreamSynchronize")
  def record_event(self) -> CUDAEvent:
    self.activate()
    return CUDAEvent(self)
  def event_seconds(self, start: CUDAEvent, end: CUDAEvent) -> float:
    driver, _ = _api()
    _check(driver.cuEventSynchronize(end.event), "cuEventSynchronize")
    return _check(driver.cuEventElapsedTime(start.event, end.event), "cuEventElapsedTime") / 1e3
  def graph(self, launches: list[tuple]) -> CUDAGraph:
    """The launches as a CUDA graph: recorded by capturing the stream (nothing runs while it is captured)."""
    driver, _ = _api()
    self.activate()
    _check(driver.cuStreamBeginCapture(self.stream, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
    try:
      for program, raws, global_size, local_size, _ in launches: program(*raws, global_size=global_size, local_size=local_size, wait=False)
    finally: graph = _check(driver.cuStreamEndCapture(self.stream), "cuStreamEndCapture")
    return CUDAGraph(self, graph, len(launches))

class CUDAGraph:
  """A captured CUDA graph, instantiated: a call queues all its kernels on the device's stream with one launch."""
  def __init__(self, dev: CUDADevice, graph, n: int):
    driver, _ = _api()
    self.dev, self.graph, self.kernels = dev, graph, n
    self.exec = _check(driver.cuGraphInstantiate(graph, 0), f"cuGraphInstantiate of {n} kernels")
    weakref.finalize(self, _destroy_graph, self.exec, graph)
  def __call__(self):
    self.dev.activate()
    _check(_api()[0].cuGraphLaunch(self.exec, self.dev.stream), f"cuGraphLaunch of {self.kernels} kernels")

def _destroy_graph(exe, graph):
  try: _api()[0].cuGraphExecDestroy(exe); _api()[0].cuGraphDestroy(graph)
  except Exception: pass

def make_device(name: str) -> Compiled: return CUDADevice(name)
