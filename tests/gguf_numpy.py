"""An independent GGUF reader in NumPy for the tests (header, F32/F16/Q8_0/Q4_1 tensors), written from the format's
description: the reference the model tests compare lucidgrad's loader and forward against."""
import struct
import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

class _Reader:
  def __init__(self, buf): self.buf, self.pos = buf, 0
  def read(self, fmt):
    v = struct.unpack_from(fmt, self.buf, self.pos); self.pos += struct.calcsize(fmt)
    return v[0] if len(v) == 1 else v
  def string(self):
    n = self.read("<Q"); s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8"); self.pos += n
    return s
  def value(self, t):
    if t in _SCALARS: return self.read(_SCALARS[t])
    if t == 8: return self.string()
    if t == 9:
      et, n = self.read("<I"), self.read("<Q")
      return [self.value(et) for _ in range(n)]
    raise ValueError(f"value type {t}")

def read_gguf(path):
  """(metadata, {name: (type, numpy shape, raw bytes)})."""
  buf = memoryview(open(path, "rb").read())
  r = _Reader(buf)
  assert bytes(buf[:4]) == b"GGUF"; r.pos = 4
  version, n_tensors, n_kv = r.read("<I"), r.read("<Q"), r.read("<Q")
  assert version in (2, 3)
  meta = {}
  for _ in range(n_kv):
    k = r.string(); meta[k] = r.value(r.read("<I"))
  infos = []
  for _ in range(n_tensors):
    name = r.string(); nd = r.read("<I")
    dims = [r.read("<Q") for _ in range(nd)]
    infos.append((name, dims, r.read("<I"), r.read("<Q")))
  align = meta.get("general.alignment", 32)
  start = (r.pos + align - 1) // align * align
  sizes = {0: lambda n: 4 * n, 1: lambda n: 2 * n, 8: lambda n: n // 32 * 34, 3: lambda n: n // 32 * 20}
  out = {}
  for name, dims, t, off in infos:
    n = int(np.prod(dims))
    out[name] = (t, tuple(reversed(dims)), buf[start + off:start + off + sizes[t](n)])
  return meta, out

def dequantize(t, shape, raw) -> np.ndarray:
  """float64 values of one tensor: F32, F16, Q8_0 (f16 scale, 32 int8) or Q4_1 (f16 scale and min, 32 nibbles)."""
  b = np.frombuffer(raw, np.uint8)
  if t == 0: return b.view(np.float32).astype(np.float64).reshape(shape)
  if t == 1: return b.view(np.float16).astype(np.float64).reshape(shape)
  if t == 8:
    blocks = b.reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float64)
    return (d * blocks[:, 2:].copy().view(np.int8)).reshape(shape)
  if t == 3:
    blocks = b.reshape(-1, 20)
    d, m = blocks[:, 0:2].copy().view(np.float16).astype(np.float64), blocks[:, 2:4].copy().view(np.float16).astype(np.float64)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float64)  # values 0..15 in the low nibbles, 16..31 high
    return (d * q + m).reshape(shape)
  raise ValueError(f"ggml type {t}")
