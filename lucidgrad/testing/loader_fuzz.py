"""Loaders given damaged files: small valid files of every format lucidgrad reads (safetensors from safe_save and from the
safetensors package, torch .pth in the zip and the legacy format, GGUF with every supported tensor type, MNIST idx raw
and gzipped, CIFAR-10 batch pickles) are truncated, bit-flipped and given huge length fields, then loaded. Each load must
end in a result that realizes, or in StateFileError (UnsafePickleError is one); within 1 s of CPU; allocating at most a
small multiple of the bytes it read plus 1 MiB (tracemalloc's peak). Anything else is a bug, printed minimised.
`python -m lucidgrad.testing.loader_fuzz --n 2000 --seed 0` runs it (torch and safetensors make some of the seeds)."""
from __future__ import annotations
import argparse, gzip, io, json, pathlib, pickle, pickletools, random, re, signal, struct, sys, tempfile, threading, time, tracemalloc
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.nn.state import StateFileError, safe_load, safe_save, torch_load, gguf_load
from lucidgrad.nn import datasets

CPU_LIMIT_S = 1.0        # a load may take this much CPU time
WATCHDOG_S = 20.0        # a load (or realizing what it gave) still running after this long is a hang, stopped by SIGALRM
MARGIN = 1 << 20         # bytes a load may allocate beyond `factor` times what it read: Python objects, Tensors, headers
HUGE = (2**62, 2**63 - 1, 2**64 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**16 - 1, 2**20)

@dataclass(frozen=True)
class Field:
  """A number in a file that says how long or where something is: at `pos`, packed as `fmt` (struct syntax)."""
  pos: int
  fmt: str
  kind: str

@dataclass
class Seed:
  """One valid file of a format, the length fields in it, and how to load it. `load(blob, path)` gets the bytes and a
  path holding them; `factor` * len(blob) + MARGIN bounds what a load may allocate."""
  fmt: str
  blob: bytes
  load: Callable[[bytes, pathlib.Path], Any]
  fields: list[Field] = field(default_factory=list)
  inner: Callable[[random.Random], tuple[bytes, str]] | None = None  # a mutation inside a container (zip, gzip), re-wrapped
  factor: float = 2.0
  extra: int = 0  # bytes a load may allocate besides (what a gzip file legitimately inflates to; the other files of a data set)

# ---- writers of small valid files ----
class _GGUFWriter:
  """GGUF v2/v3 files from the spec, recording where every count, length, type and offset was written."""
  def __init__(self): self.buf, self.fields = bytearray(), []
  def put(self, fmt: str, v, kind: str | None = None):
    if kind: self.fields.append(Field(len(self.buf), fmt, kind))
    self.buf += struct.pack(fmt, v)
  def string(self, s: str, kind: str = "gguf string length"):
    self.put("<Q", len(b := s.encode()), kind)
    self.buf += b
  def value(self, vt: int, v):
    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    if vt in scalars: self.put(scalars[vt], v)
    elif vt == 8: self.string(v)
    else:
      etype, items = v
      self.put("<I", etype, "gguf array type")
      self.put("<Q", len(items), "gguf array count")
      for x in items: self.value(etype, x)

def gguf_file(kvs: list, tensors: list, version: int = 3, alignment: int = 32) -> tuple[bytes, list[Field]]:
  """A GGUF file: kvs [(key, value type, value)] (an array value is (element type, items)), tensors [(name, dims fastest
  first, ggml type, data bytes)]; and the fields that hold its counts, lengths and offsets."""
  w = _GGUFWriter()
  w.buf += b"GGUF"
  w.put("<I", version, "gguf version")
  w.put("<Q", len(tensors), "gguf tensor count")
  w.put("<Q", len(kvs), "gguf metadata count")
  for k, vt, v in kvs:
    w.string(k)
    w.put("<I", vt, "gguf value type")
    w.value(vt, v)
  data, offsets = b"", []
  for _, _, _, blob in tensors:
    offsets.append(len(data))
    data += blob + bytes(-len(blob) % alignment)
  for (name, dims, tt, _), off in zip(tensors, offsets):
    w.string(name)
    w.put("<I", len(dims), "gguf tensor rank")
    for d in dims: w.put("<Q", d, "gguf tensor dim")
    w.put("<I", tt, "gguf tensor type")
    w.put("<Q", off, "gguf tensor offset")
  w.buf += bytes(-len(w.buf) % alignment)
  return bytes(w.buf) + data, w.fields

def _f16_blocks(rng: np.random.Generator, nb: int, size: int, f16_at: list[int]) -> bytes:
  """nb random quant blocks of `size` bytes whose float16 scales (at byte offsets f16_at) are small finite numbers."""
  b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
  for at in f16_at: b[:, at:at + 2] = (rng.standard_normal((nb, 1)) * 0.1).astype(np.float16).view(np.uint8)
  return b.tobytes()

def py2_pickle(obj) -> bytes:
  """obj as Python 2's cPickle wrote it (protocol 2, str as bytes, arrays by numpy.core.multiarray._reconstruct and
  BUILD): the format of the real CIFAR-10 batches. Handles dict, list, tuple, int, bytes, None, bool and ndarray."""
  def enc(o) -> bytes:
    if o is None: return b"N"
    if o is False: return b"\x89"
    if isinstance(o, bytes): return (b"U" + bytes([len(o)]) if len(o) < 256 else b"T" + struct.pack("<i", len(o))) + o
    if isinstance(o, int): return b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o)
    if isinstance(o, tuple): return b"(" + b"".join(enc(x) for x in o) + b"t"
    if isinstance(o, list): return b"](" + b"".join(enc(x) for x in o) + b"e"
    if isinstance(o, dict): return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
    if isinstance(o, np.ndarray):
      dt = o.dtype.newbyteorder("<") if o.dtype.itemsize > 1 else o.dtype
      order = b"<" if dt.itemsize > 1 else b"|"
      dtype = b"cnumpy\ndtype\n" + enc((dt.str[1:].encode(), 0, 1)) + b"R" + enc((3, order, None, None, None, -1, -1, 0)) + b"b"
      head = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + enc((0,)) + enc(b"b") + b"\x87R"
      return head + b"(" + enc(1) + enc(tuple(o.shape)) + dtype + enc(False) + enc(o.astype(dt).tobytes()) + b"tb"
    raise TypeError(type(o))
  return b"\x80\x02" + enc(obj) + b"."

def idx_bytes(a: np.ndarray) -> bytes:
  code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D,
          np.dtype(np.float64): 0x0E}[a.dtype]
  return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(a.dtype.newbyteorder(">")).tobytes()

# ---- where the length fields are ----
_PICKLE_ARGS = {"BINUNICODE": "<I", "SHORT_BINUNICODE": "B", "BINUNICODE8": "<Q", "BINBYTES": "<I", "SHORT_BINBYTES": "B", "BINBYTES8": "<Q",
                "BYTEARRAY8": "<Q", "FRAME": "<Q", "LONG1": "B", "LONG4": "<i", "BINSTRING": "<i", "SHORT_BINSTRING": "B", "BINPUT": "B",
                "LONG_BINPUT": "<I", "BINGET": "B", "LONG_BINGET": "<I", "BININT": "<i", "BININT1": "B", "BININT2": "<H"}

def pickle_fields(data: bytes, base: int = 0) -> tuple[list[Field], int]:
  """The length/index/int arguments of the pickle at data[0:] (as fields at base + their offset), and where it ends."""
  out, end = [], len(data)
  try:
    for op, _, pos in pickletools.genops(io.BytesIO(data)):
      if op.name in _PICKLE_ARGS: out.append(Field(base + pos + 1, _PICKLE_ARGS[op.name], f"pickle {op.name}"))
      if op.name == "STOP":
        end = pos + 1
        break
  except Exception: pass  # a pickle followed by other bytes, or not one: what was found so far
  return out, end

def zip_fields(blob: bytes) -> list[Field]:
  """The sizes, name/extra lengths, offsets and counts in a zip's local headers, central directory and end records,
  and the fields of a stored data.pkl."""
  out: list[Field] = []
  for sig, fields in ((b"PK\x03\x04", [(18, "<I"), (22, "<I"), (26, "<H"), (28, "<H")]),
                      (b"PK\x01\x02", [(20, "<I"), (24, "<I"), (28, "<H"), (30, "<H"), (32, "<H"), (42, "<I")]),
                      (b"PK\x05\x06", [(8, "<H"), (10, "<H"), (12, "<I"), (16, "<I"), (20, "<H")]),
                      (b"PK\x06\x06", [(24, "<Q"), (32, "<Q"), (40, "<Q"), (48, "<Q")]), (b"PK\x06\x07", [(8, "<Q")])):
    i = blob.find(sig)
    while i >= 0:
      out += [Field(i + off, fmt, f"zip {sig[2:].hex()} +{off}") for off, fmt in fields if i + off + struct.calcsize(fmt) <= len(blob)]
      i = blob.find(sig, i + 1)
  try:
    z = zipfile.ZipFile(io.BytesIO(blob))
    for info in z.infolist():
      if info.filename.endswith("data.pkl") and info.compress_type == zipfile.ZIP_STORED:
        h = info.header_offset
        start = h + 30 + struct.unpack_from("<H", blob, h + 26)[0] + struct.unpack_from("<H", blob, h + 28)[0]
        out += pickle_fields(blob[start:start + info.file_size], start)[0]
  except zipfile.BadZipFile: pass
  return out

def legacy_fields(blob: bytes) -> list[Field]:
  """The fields of the five pickles of a legacy torch file and the element count before each storage's bytes."""
  out, pos = [], 0
  for _ in range(5):
    fs, n = pickle_fields(blob[pos:], pos)
    out, pos = out + fs, pos + n
  while pos + 8 <= len(blob):  # count (int64) then count * itemsize bytes; the itemsize is the one that lands on the next count or the end
    out.append(Field(pos, "<q", "legacy storage count"))
    n = struct.unpack_from("<q", blob, pos)[0]
    nxt = [pos + 8 + n * k for k in (4, 8, 2, 1) if pos + 8 + n * k == len(blob) or
           (pos + 16 + n * k <= len(blob) and 0 <= struct.unpack_from("<q", blob, pos + 8 + n * k)[0] < 1 << 20)]
    if n < 0 or not nxt: break
    pos = nxt[0]
  return out

# ---- mutations ----
def _set(blob: bytes, f: Field, v: int) -> bytes:
  size, signed = struct.calcsize(f.fmt), f.fmt[-1].islower() and f.fmt[-1] != "?"
  v &= (1 << 8 * size) - 1
  if signed and v >= 1 << (8 * size - 1): v -= 1 << 8 * size
  return blob[:f.pos] + struct.pack(f.fmt, v) + blob[f.pos + size:]

def inflate(blob: bytes, f: Field, rng: random.Random) -> tuple[bytes, str]:
  """The field set to a huge value, to just past the end of the file, or next to what it was."""
  old = struct.unpack_from(f.fmt, blob, f.pos)[0]
  left = len(blob) - f.pos
  v = rng.choice([*HUGE, left, left + 1, len(blob) + 1, old + 1, old - 1, 2 * old + 1, 0])
  return _set(blob, f, v), f"{f.kind} at {f.pos}: {old} -> {v}"

def mutate(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
  """One damaged copy of seed.blob and what was done to it."""
  blob, kinds = seed.blob, ["truncate", "flip", "bytes"] + ["inflate"] * 3 * bool(seed.fields) + ["inner"] * 2 * bool(seed.inner)
  kind = rng.choice(kinds)
  if kind == "truncate":
    n = rng.randrange(len(blob))
    return blob[:n], f"truncated to {n} of {len(blob)} bytes"
  if kind in ("flip", "bytes"):
    b, what = bytearray(blob), []
    for _ in range(rng.randint(1, 4)):
      i = rng.randrange(len(b))
      old = b[i]
      b[i] = old ^ (1 << rng.randrange(8)) if kind == "flip" else rng.choice([0, 0xff, 0x7f, 0x80, rng.randrange(256)])
      what.append(f"[{i}] {old:#04x}->{b[i]:#04x}")
    return bytes(b), "bytes " + ", ".join(what)
  if kind == "inflate":
    out, what = inflate(blob, rng.choice(seed.fields), rng)
    if rng.random() < 0.25:  # two fields at once: a length and the offset that would make it fit
      out, w2 = inflate(out, rng.choice(seed.fields), rng)
      what += "; " + w2
    return out, what
  assert seed.inner is not None
  return seed.inner(rng)

def _mutate_inner(data: bytes, fields: list[Field], rng: random.Random) -> tuple[bytes, str]:
  """A mutation of the bytes inside a container."""
  inner = Seed("inner", data, lambda b, p: None, fields)
  return mutate(inner, rng)

# ---- the seeds ----
def _realize(out) -> None:
  """Realize every Tensor in what a loader returned (its values must come out without an error)."""
  seen: set[int] = set()
  def walk(x):
    if isinstance(x, Tensor): x.numpy()
    elif id(x) in seen: return
    elif isinstance(x, (dict, list, tuple)):
      seen.add(id(x))
      for v in (x.values() if isinstance(x, dict) else x): walk(v)
  walk(out)

def _both(fn: Callable[[Any], Any]) -> Callable[[bytes, pathlib.Path], Any]:
  """A state loader fed the path (memory-mapped, writable) or the bytes (read-only: tensors are copied), by turns."""
  turn = [0]
  def load(blob: bytes, path: pathlib.Path):
    turn[0] += 1
    return fn(path if turn[0] % 2 else blob)
  return load

FORMATS = ("safetensors", "safetensors-pkg", "torch-zip", "torch-legacy", "gguf", "mnist-idx", "mnist-idx-gz", "cifar-batch")

def seeds(work: pathlib.Path, formats: list[str] | None = None) -> list[Seed]:
  """The seed files of `formats` (default: all), made fresh in `work` (which the CIFAR loads use as their data set directory)."""
  return [s for s in _all_seeds(work, formats or list(FORMATS)) if s.fmt in (formats or FORMATS)]

def _all_seeds(work: pathlib.Path, formats: list[str]) -> list[Seed]:
  out: list[Seed] = []
  want = lambda *fmts: any(f in formats for f in fmts)
  if want("safetensors", "safetensors-pkg"): out += _safetensors_seeds(work, np.random.default_rng(0))
  if want("torch-zip", "torch-legacy"): out += _torch_seeds()
  if want("gguf"): out.append(_gguf_seed(np.random.default_rng(1)))
  if want("mnist-idx", "mnist-idx-gz"): out += _idx_seeds(np.random.default_rng(2))
  if want("cifar-batch"): out += _cifar_seeds(work, np.random.default_rng(3))
  return out

def _safetensors_seeds(work: pathlib.Path, rng: np.random.Generator) -> list[Seed]:
  out = []
  st_tensors = {"w": rng.standard_normal((3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int64), "h": np.arange(6, dtype=np.float16),
                "u": np.arange(7, dtype=np.uint8), "b": np.array([True, False, True]), "s": np.float64(2.5).reshape(())}
  safe_save({k: Tensor(v) for k, v in st_tensors.items()} | {"bf": Tensor([1.0, -2.0]).cast(dtypes.bfloat16)}, work / "ours.safetensors",
            metadata={"format": "pt", "note": "x"})
  for fmt, blob in (("safetensors", (work / "ours.safetensors").read_bytes()), ("safetensors-pkg", _pkg_safetensors(st_tensors))):
    if blob is None: continue
    out.append(Seed(fmt, blob, _both(safe_load), [Field(0, "<Q", "safetensors header length")], inner=_safetensors_inner(blob), factor=2))
  return out

def _gguf_seed(rng: np.random.Generator) -> Seed:
  kvs = [("general.architecture", 8, "llama"), ("general.alignment", 4, 32), ("u8", 0, 7), ("i64", 11, -3), ("f32", 6, 0.5), ("yes", 7, True),
         ("tokens", 9, (8, ["a", "bc", ""])), ("scores", 9, (6, [0.5, -1.0, 2.0])), ("nested", 9, (9, [(4, [1, 2]), (8, ["x"])]))]
  tensors = [("f32", (4, 3), 0, rng.standard_normal(12).astype(np.float32).tobytes()), ("f16", (5,), 1, np.arange(5, dtype=np.float16).tobytes()),
             ("bf16", (2,), 30, np.array([0x3f80, 0xc040], np.uint16).tobytes()), ("i32", (3,), 26, np.arange(3, dtype=np.int32).tobytes()),
             ("q8_0", (32, 2), 8, _f16_blocks(rng, 2, 34, [0])), ("q4_0", (64,), 2, _f16_blocks(rng, 2, 18, [0])),
             ("q4_k", (256,), 12, _f16_blocks(rng, 1, 144, [0, 2])), ("q6_k", (256,), 14, _f16_blocks(rng, 1, 210, [208]))]
  blob, fields = gguf_file(kvs, tensors)
  return Seed("gguf", blob, _both(gguf_load), fields, factor=2)

def _idx_seeds(rng: np.random.Generator) -> list[Seed]:
  out = []
  for a in (rng.integers(0, 256, (3, 7, 5), dtype=np.uint8), np.arange(-6, 6, dtype=np.int16).reshape(4, 3), rng.standard_normal(6).astype("f4")):
    raw = idx_bytes(a)
    fs = [Field(3, "B", "idx rank")] + [Field(4 + 4 * i, ">I", "idx dim") for i in range(a.ndim)]
    out.append(Seed("mnist-idx", raw, lambda b, p: datasets.read_idx(p), fs, factor=3))
    gz = gzip.compress(raw, mtime=0)
    def regzip(r: random.Random, raw=raw, fs=fs) -> tuple[bytes, str]:
      b, what = _mutate_inner(raw, fs, r)
      return gzip.compress(b, mtime=0), "inside the gzip: " + what
    trailer = [Field(len(gz) - 4, "<I", "gzip ISIZE"), Field(len(gz) - 8, "<I", "gzip CRC")]
    out.append(Seed("mnist-idx-gz", gz, lambda b, p: datasets.read_idx(p), trailer, inner=regzip, factor=3, extra=3 * len(raw)))
  return out

def _pkg_safetensors(tensors: dict[str, np.ndarray]) -> bytes | None:
  try: from safetensors.numpy import save
  except ImportError: return None
  return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"by": "safetensors"})

def _safetensors_inner(blob: bytes) -> Callable[[random.Random], tuple[bytes, str]]:
  """A number of the JSON header (a dim or a data offset) set huge or just past the data, the header re-written."""
  n = struct.unpack_from("<Q", blob, 0)[0]
  header, data = json.loads(blob[8:8 + n]), blob[8 + n:]
  def mut(rng: random.Random) -> tuple[bytes, str]:
    h = json.loads(json.dumps(header))
    k = rng.choice([k for k in h if k != "__metadata__"])
    where, i = rng.choice([("shape", j) for j in range(len(h[k]["shape"]))] + [("data_offsets", 0), ("data_offsets", 1)])
    v = rng.choice([*HUGE, len(data) + 1, len(data), 10**30, -1])
    h[k][where][i] = v
    head = json.dumps(h).encode()
    return struct.pack("<Q", len(head)) + head + data, f"header {k}.{where}[{i}] = {v}"
  return mut

def _torch_seeds() -> list[Seed]:
  try: import torch
  except ImportError: return []
  g = torch.Generator().manual_seed(0)
  sd = {"w": torch.randn(3, 4, generator=g), "b": torch.arange(5), "h": torch.ones(3, dtype=torch.float16), "bf": torch.ones(2, dtype=torch.bfloat16),
        "v": torch.arange(12.0).reshape(3, 4)[:, 1:3], "p": torch.nn.Parameter(torch.ones(2)), "nest": {"l": [torch.zeros(2, dtype=torch.int32)],
        "t": (torch.ones(1, dtype=torch.bool),)}}
  out = []
  for fmt, new in (("torch-zip", True), ("torch-legacy", False)):
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=new)
    blob = buf.getvalue()
    out.append(Seed(fmt, blob, _both(torch_load), zip_fields(blob) if new else legacy_fields(blob), inner=_rezip(blob) if new else None, factor=2))
  return out

def _rezip(blob: bytes) -> Callable[[random.Random], tuple[bytes, str]]:
  """A mutation of a torch zip's data.pkl, the archive written again around it (so its CRC is right)."""
  z = zipfile.ZipFile(io.BytesIO(blob))
  files = {i.filename: z.read(i) for i in z.infolist()}
  pkl = next(n for n in files if n.endswith("data.pkl"))
  fs = pickle_fields(files[pkl])[0]
  def mut(rng: random.Random) -> tuple[bytes, str]:
    b, what = _mutate_inner(files[pkl], fs, rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as w:
      for k, v in files.items(): w.writestr(k, b if k == pkl else v)
    return out.getvalue(), "data.pkl: " + what
  return mut

def _cifar_seeds(work: pathlib.Path, rng: np.random.Generator) -> list[Seed]:
  """A CIFAR batch as Python 2 wrote it and as protocol 4 and 5 write it, loaded by cifar10(dir) as its test_batch
  beside five small valid batches."""
  d = work / "cifar"
  d.mkdir(exist_ok=True)
  for i in range(1, 6):
    (d / f"data_batch_{i}").write_bytes(py2_pickle({b"data": rng.integers(0, 256, (1, 3072), dtype=np.uint8), b"labels": [i]}))
  others = sum((d / f"data_batch_{i}").stat().st_size for i in range(1, 6))
  x, y = rng.integers(0, 256, (2, 3072), dtype=np.uint8), [3, 7]
  def load(blob: bytes, path: pathlib.Path):
    (d / "test_batch").write_bytes(blob)
    return datasets.cifar10(d)
  out = []
  for proto, blob in (("py2", py2_pickle({b"batch_label": b"testing batch 1 of 1", b"labels": y, b"data": x, b"filenames": [b"a.png", b"b.png"]})),
                      ("p4", pickle.dumps({"data": x, "labels": y}, protocol=4)), ("p5", pickle.dumps({"data": x, "labels": y}, protocol=5))):
    out.append(Seed("cifar-batch", blob, load, pickle_fields(blob)[0], factor=4, extra=4 * others))
  return out

# ---- running one load ----
class Hang(BaseException):
  """Raised by the watchdog into a load that ran too long (a BaseException, so no loader's `except Exception` eats it)."""

@dataclass
class Outcome:
  kind: str     # "loaded", "refused", or a bug: "crash", "slow", "memory", "realize", "hang"
  detail: str
  cpu_s: float = 0.0
  alloc: int = 0

def _on_alarm(signum, frame): raise Hang()

def run_one(seed: Seed, blob: bytes, path: pathlib.Path, realize: bool = True) -> Outcome:
  """Load blob (also written to path) as seed's format under tracemalloc and the watchdog, then realize the result."""
  path.write_bytes(blob)
  main = threading.current_thread() is threading.main_thread()
  if main: old = signal.signal(signal.SIGALRM, _on_alarm); signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
  try:
    tracemalloc.start()
    st = time.process_time()
    try: out, err = seed.load(blob, path), None
    except StateFileError as e: out, err = None, e
    except Hang: return Outcome("hang", f"still loading after {WATCHDOG_S} s")
    except Exception as e: return Outcome("crash", f"{type(e).__name__}: {str(e)[:300]}")
    finally:
      cpu, alloc = time.process_time() - st, tracemalloc.get_traced_memory()[1]
      tracemalloc.stop()
    limit = seed.factor * len(blob) + seed.extra + MARGIN
    if cpu > CPU_LIMIT_S: return Outcome("slow", f"{cpu:.2f} s of CPU", cpu, alloc)
    if alloc > limit: return Outcome("memory", f"allocated {alloc} bytes for a {len(blob)}-byte file (limit {limit})", cpu, alloc)
    if err is not None: return Outcome("refused", f"{type(err).__name__}: {str(err)[:200]}", cpu, alloc)
    if realize:
      try: _realize(out)
      except Hang: return Outcome("hang", f"still realizing after {WATCHDOG_S} s", cpu, alloc)
      except Exception as e: return Outcome("realize", f"loaded, then realizing raised {type(e).__name__}: {str(e)[:300]}", cpu, alloc)
    return Outcome("loaded", "", cpu, alloc)
  finally:
    if main: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

BUGS = ("crash", "slow", "memory", "realize", "hang")

def measured(seed: Seed, blob: bytes, path: pathlib.Path, realize: bool = True) -> Outcome:
  """run_one, where a case over the CPU or memory bound is run once more and counts as a bug only if it is over again:
  the bounds are the loader's, and a cost the process pays once -- a first compile of a kernel, a library read from
  the kernel cache, anything another thread allocates meanwhile (tracemalloc sees the whole process) -- lands in
  whichever case comes first. A loader that reads too much or too long does it every time. Seen in CI: 10.5 MB once
  in a gguf case that stayed under 100 KiB when run again."""
  o = run_one(seed, blob, path, realize)
  return run_one(seed, blob, path, realize) if o.kind in ("slow", "memory") else o

def minimise(seed: Seed, blob: bytes, kind: str, path: pathlib.Path) -> bytes:
  """A smaller damage that fails the same way: the file cut shorter, then each changed byte put back where it can be."""
  def same(b: bytes) -> bool: return run_one(seed, b, path, realize=kind == "realize").kind == kind
  lo = 0  # shortest prefix that still fails, by bisection from the whole
  hi = len(blob)
  while lo < hi:
    mid = (lo + hi) // 2
    if same(blob[:mid]): hi = mid
    else: lo = mid + 1
  if hi < len(blob) and same(blob[:hi]): blob = blob[:hi]
  b = bytearray(blob)
  for i in [i for i in range(min(len(b), len(seed.blob))) if b[i] != seed.blob[i]]:
    old, b[i] = b[i], seed.blob[i]
    if not same(bytes(b)): b[i] = old
  return bytes(b)

def describe(seed: Seed, blob: bytes) -> str:
  """How blob differs from the seed: its length and the bytes changed (first 12)."""
  diff = [f"[{i}] {seed.blob[i]:#04x}->{blob[i]:#04x}" for i in range(min(len(blob), len(seed.blob))) if blob[i] != seed.blob[i]]
  changed = ", ".join(diff[:12]) + (f" (+{len(diff) - 12} more)" if len(diff) > 12 else "") if diff else "no byte changed"
  return f"{len(blob)} of {len(seed.blob)} bytes; {changed}"

@dataclass
class Stats:
  tried: int = 0
  counts: dict[str, int] = field(default_factory=dict)
  max_cpu: float = 0.0
  max_alloc: int = 0
  bugs: list[tuple[str, str, bytes]] = field(default_factory=list)  # (what was done, outcome detail, the file)

def fuzz(n: int, seed: int = 0, formats: list[str] | None = None, realize: bool = True, work: pathlib.Path | None = None,
         log: Callable[[str], None] | None = None) -> dict[str, Stats]:
  """n damaged files per format (spread over its seed files); the stats per format."""
  tmp = tempfile.TemporaryDirectory() if work is None else None
  work = pathlib.Path(tmp.name) if tmp is not None else work
  try:
    stats: dict[str, Stats] = {}
    by_fmt: dict[str, list[Seed]] = {}
    for s in seeds(work, formats): by_fmt.setdefault(s.fmt, []).append(s)
    for fmt, ss in by_fmt.items():
      rng, st = random.Random(f"{seed}:{fmt}"), stats.setdefault(fmt, Stats())  # per format: its cases do not depend on which others run
      for s in ss:  # each valid file must load and realize; the first load imports and compiles what the others use, so it is not measured
        run_one(s, s.blob, work / "case.bin", realize)
        if (o := measured(s, s.blob, work / "case.bin", realize)).kind != "loaded":
          st.bugs.append(("the valid seed file", f"{o.kind}: {o.detail}", s.blob))
      for i in range(n):
        s = ss[i % len(ss)]
        blob, what = mutate(s, rng)
        o = measured(s, blob, work / "case.bin", realize)
        st.tried += 1
        st.counts[o.kind] = st.counts.get(o.kind, 0) + 1
        st.max_cpu, st.max_alloc = max(st.max_cpu, o.cpu_s), max(st.max_alloc, o.alloc)
        if o.kind in BUGS:
          st.bugs.append((what, f"{o.kind}: {o.detail}", blob))
          if log: log(f"{fmt}: {what}: {o.kind}: {o.detail}")
    return stats
  finally:
    if tmp is not None: tmp.cleanup()

def signature(detail: str) -> str:
  """A bug's kind and error with the numbers and paths taken out, so one cause counts once however often it is hit."""
  kind, _, err = detail.partition(": ")
  cls, _, msg = err.partition(": ")
  if (tried := [ln for ln in msg.splitlines() if re.match(r"\s+\d+\. ", ln)]):  # a data set's error: the reason each place failed
    msg = " ".join(ln.split(": ", 1)[-1] for ln in tried)
  words = [w for w in re.sub(r"\S*/\S*", "", msg).split() if not re.search(r"\d", w)]
  return f"{kind}: {cls}: {' '.join(words[:8])}"

def summary(stats: dict[str, Stats]) -> str:
  lines = [f"{'format':<16}{'tried':>7}{'loaded':>8}{'refused':>9}{'bugs':>6}{'max cpu ms':>12}{'max alloc KiB':>15}"]
  for fmt, st in stats.items():
    lines.append(f"{fmt:<16}{st.tried:>7}{st.counts.get('loaded', 0):>8}{st.counts.get('refused', 0):>9}{len(st.bugs):>6}"
                 f"{st.max_cpu * 1e3:>12.1f}{st.max_alloc / 1024:>15.1f}")
  groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
  for fmt, st in stats.items():
    for what, detail, _ in st.bugs: groups.setdefault((fmt, signature(detail)), []).append((what, detail))
  lines.append(f"bugs: {sum(len(st.bugs) for st in stats.values())}, {len(groups)} distinct")
  for (fmt, _), cases in groups.items(): lines.append(f"  {fmt} x{len(cases)}: {cases[0][1]}\n    e.g. {cases[0][0]}")
  return "\n".join(lines)

if __name__ == "__main__":
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=1000, help="damaged files per format")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--formats", default="", help="comma-separated formats (default: all)")
  ap.add_argument("--no-realize", action="store_true", help="do not realize what loaded (no kernels are compiled)")
  ap.add_argument("--minimise", action="store_true", help="shrink each bug's file and print how it differs from its seed")
  ap.add_argument("-v", action="store_true", help="print each bug as it is found")
  args = ap.parse_args()
  st0 = time.perf_counter()
  with tempfile.TemporaryDirectory() as d:
    work = pathlib.Path(d)
    res = fuzz(args.n, args.seed, [f for f in args.formats.split(",") if f] or None, not args.no_realize, work, print if args.v else None)
    print(f"loader fuzz: seed {args.seed}, {args.n} damaged files per format, {time.perf_counter() - st0:.1f} s")
    print(summary(res))
    if args.minimise:
      all_seeds = seeds(work)
      for fmt, st in res.items():
        for what, detail, blob in st.bugs:  # the seed it came from: the one it differs least from
          s = min((x for x in all_seeds if x.fmt == fmt), key=lambda x: sum(a != b for a, b in zip(x.blob, blob)) + abs(len(x.blob) - len(blob)))
          small = minimise(s, blob, detail.split(":")[0], work / "min.bin")
          print(f"{fmt}: {detail}\n  minimised: {describe(s, small)}")
  sys.exit(1 if any(st.bugs for st in res.values()) else 0)
