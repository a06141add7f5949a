"""State that outlives a process: the tensors an object holds (state dicts), and the files they are kept in —
safetensors, PyTorch's .pth/.pt and GGUF — read memory-mapped without copies where the memory allows."""
from __future__ import annotations
import collections, io, json, math, mmap, os, pickle, pickletools, struct, types, zipfile, zlib
from dataclasses import dataclass
from typing import Any, Callable
import numpy as np
from lucidgrad import Tensor, dtypes, DType, Device
from lucidgrad.helpers import DEBUG
from lucidgrad.nn.module import Module, IncompatibleKeys, load_tensors
import functools, time

class StateFileError(ValueError):
  """A safetensors, PyTorch or GGUF file that is corrupt, truncated or not of that format; the message names the file
  and what was wrong."""

class UnsafePickleError(StateFileError, pickle.UnpicklingError):
  """A PyTorch file whose pickle asks for a global that rebuilding tensors does not need (it is never called)."""

# ---- walking objects for their tensors ----
_NOT_CONTAINERS = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)

def _named_tensors(obj, prefix: str, out: dict[str, Tensor], path: set[int]):
  if isinstance(obj, Tensor):
    out[prefix] = obj
    return
  if id(obj) in path: return  # a cycle (a child pointing back at its parent)
  if isinstance(obj, (list, tuple)): items: Any = enumerate(obj)
  elif isinstance(obj, dict): items = obj.items()
  elif isinstance(obj, Module):  # its state dict's entries in torch's order, then what it holds without registering (a plain list of layers)
    internal = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")
    items = [*obj._state_items(), *obj._modules.items(), *((k, v) for k, v in vars(obj).items() if k not in internal)]
  elif hasattr(obj, "__dict__") and not isinstance(obj, _NOT_CONTAINERS): items = vars(obj).items()
  else: return
  path.add(id(obj))
  for k, v in list(items): _named_tensors(v, f"{prefix}.{k}" if prefix else str(k), out, path)
  path.discard(id(obj))

def get_state_dict(obj, prefix: str = "") -> dict[str, Tensor]:
  """Every Tensor reachable from obj (through attributes, lists, tuples and dicts) by its PyTorch-style dotted name,
  e.g. "layers.0.weight", each name starting with `prefix`. A tensor reachable by two names appears under both. A
  Module gives its state_dict()'s keys in its order (the tensors themselves, not detached views), then any tensors it
  holds without registering them (a plain list of layers, which torch's state_dict leaves out)."""
  out: dict[str, Tensor] = {}
  _named_tensors(obj, "", out, set())
  return {prefix + k: v for k, v in out.items()}

def get_parameters(obj) -> list[Tensor]:
  """Every Tensor reachable from obj that requires grad, once each, in the order of get_state_dict: what an optimiser
  takes, like torch's parameters() (buffers such as BatchNorm's running stats are left out; get_state_dict has them)."""
  return list({id(t): t for t in get_state_dict(obj).values() if t.requires_grad}.values())

def load_state_dict(obj, state_dict: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
  """Copy the tensors of state_dict (lucidgrad Tensors, NumPy arrays or torch tensors) into obj's tensors of the same
  name (get_state_dict's names; cast to their dtype, moved to their device), in place, realized together in one
  schedule; obj's tensors never share memory with the state dict's. Returns (missing keys, unexpected keys), torch's
  named tuple. Strict (the default) raises on either; a shape that differs, or a float value for an integer tensor,
  always raises. Everything wrong is reported in one RuntimeError, before anything is written."""
  return load_tensors(get_state_dict(obj), state_dict, strict, type(obj).__name__)

# ---- reading files ----
def _open(src) -> tuple[str, memoryview]:
  """(a name for messages, the bytes): a path is memory-mapped copy-on-write, so a tensor written in place never
  changes the file; a bytes-like object is used as it is (read-only memory is copied by Tensor.from_bytes)."""
  if isinstance(src, (str, os.PathLike)):
    name = os.fspath(src)
    with open(name, "rb") as f:
      if os.fstat(f.fileno()).st_size == 0: return name, memoryview(bytearray())
      return name, memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY))
  try: return "<bytes>", memoryview(src).cast("B")
  except TypeError: raise TypeError(f"expected a path or a bytes-like object, got a {type(src).__name__}") from None

class _MemFile(io.RawIOBase):
  """A seekable file over a memoryview, for zipfile and tarfile: a read copies only the bytes that are there, so a
  corrupt size in a zip or tar header never allocates more than the file holds (RawIOBase.read(n) would allocate n)."""
  def __init__(self, mem: memoryview): self.mem, self.pos = mem, 0
  def readable(self): return True
  def seekable(self): return True
  def tell(self): return self.pos
  def seek(self, off, whence=0):
    self.pos = max(0, (off, self.pos + off, len(self.mem) + off)[whence])
    return self.pos
  def read(self, n: int | None = -1) -> bytes:
    end = len(self.mem) if n is None or n < 0 else min(len(self.mem), self.pos + n)
    out = bytes(self.mem[self.pos:end]) if end > self.pos else b""
    self.pos += len(out)
    return out
  def readinto(self, b):
    n = max(0, min(len(b), len(self.mem) - self.pos))
    b[:n] = self.mem[self.pos:self.pos + n]
    self.pos += n
    return n

class _PickleFile:
  """The file a pickle is read from: a length in the pickle longer than what is left is refused before anything is
  allocated for it."""
  def __init__(self, name: str, mem: memoryview, pos: int = 0): self.name, self.mem, self.pos = name, mem, pos
  def read(self, n: int = -1) -> bytes:
    left = len(self.mem) - self.pos
    if n > left: raise StateFileError(f"{self.name}: the pickle asks for {n} bytes where {left} are left (corrupt or truncated)")
    out = bytes(self.mem[self.pos:self.pos + (left if n < 0 else n)])
    self.pos += len(out)
    return out
  def readline(self) -> bytes:
    end = self.pos
    while end < len(self.mem):
      if (i := bytes(self.mem[end:end + 4096]).find(b"\n")) >= 0: return self.read(end + i + 1 - self.pos)
      end += 4096
    return self.read()

def _check_span(name: str, what: str, start: int, nbytes: int, total: int):
  if start < 0 or nbytes < 0 or start + nbytes > total:
    raise StateFileError(f"{name}: {what} needs bytes [{start}, {start + nbytes}) but the file has {total} (truncated?)")

_MAX_DIMS = 64  # NumPy's limit: a tensor with more dimensions could be loaded but never realized

def _shape_nbytes(shape, itemsize: int) -> int | None:
  """The bytes a tensor of `shape` holds, or None where the shape is not one (a dimension that is not an int >= 0, more
  than 64 of them, or sizes whose product, zeros left out, exceeds 2**63 bytes, which NumPy cannot hold even empty).
  The product stops growing at the limit, so a header with huge numbers costs no time."""
  if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape): return None
  n = itemsize
  for d in shape:
    if d and (n := n * d) >= 2**63: return None
  return 0 if 0 in shape else n

def _is_int(x) -> bool: return isinstance(x, int) and not isinstance(x, bool)

# ---- pickles that may only rebuild what a table names ----
class _Opcodes(dict):
  """Opcode -> handler; an opcode not in the table is refused."""
  def __missing__(self, code: int):
    op = pickletools.code2op.get(chr(code))
    return lambda up: up.refuse(f"the opcode {op.name if op else repr(bytes([code]))}")

_PLAIN_OPS = ("PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT "
              "STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 "
              "EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST EMPTY_DICT DICT EMPTY_SET FROZENSET GET BINGET LONG_BINGET PUT BINPUT "
              "LONG_BINPUT MEMOIZE GLOBAL STACK_GLOBAL").split()

class _RestrictedUnpickler(pickle._Unpickler):
  """The pure-Python Unpickler limited to data: GLOBAL resolves only the (module, name) pairs of `globals_table` (from
  the table: nothing is imported and no attribute of a module is looked up), REDUCE calls only what the table gave,
  BUILD reaches only `build` (which refuses by default), items are added only to plain lists, dicts and sets, and the
  opcodes that make objects another way (INST, OBJ, NEWOBJ, EXT*, PERSID, out-of-band buffers) are refused. Each read
  goes through the file, which refuses a length longer than what is left before anything is allocated (pickle's C
  Unpickler allocates first). Refusals raise UnsafePickleError, naming the file and what was asked for."""
  globals_table: dict[tuple[str, str], Any] = {}
  def __init__(self, file, name: str, **kw):
    super().__init__(file, **kw)
    self.file, self.name, self.handed = file, name, {}
  def refuse(self, what: str):
    raise UnsafePickleError(f"{self.name}: refusing to load {what}: the pickle asks for more than rebuilding data needs (nothing was called)")
  def find_class(self, module: str, name: str):
    if (obj := self.globals_table.get((module, name))) is None: self.refuse(f"the global {module}.{name}")
    if callable(obj): self.handed[id(obj)] = obj
    return obj
  def build(self, inst, state): self.refuse(f"BUILD (__setstate__) on a {type(inst).__name__}")
  def reduce(self, fn, args): return fn(*args)
  def persistent_load(self, pid): self.refuse(f"the persistent id {pid!r:.100}")
  def _load_reduce(self):
    args, fn = self.stack.pop(), self.stack[-1]
    if id(fn) not in self.handed or not isinstance(args, tuple): self.refuse(f"REDUCE on a {type(fn).__name__} it did not name as a global")
    self.stack[-1] = self.reduce(fn, args)
  def _load_build(self):
    state = self.stack.pop()
    self.build(self.stack[-1], state)
  def _into(self, kinds: tuple[type, ...], what: str):
    if type(target := self.stack[-1]) not in kinds: self.refuse(f"{what} into a {type(target).__name__}")
    return target
  def _load_append(self):
    v = self.stack.pop()
    self._into((list,), "APPEND").append(v)
  def _load_appends(self):
    items = self.pop_mark()
    self._into((list,), "APPENDS").extend(items)
  def _load_setitem(self):
    v, k = self.stack.pop(), self.stack.pop()
    self._into((dict, collections.OrderedDict), "SETITEM")[k] = v
  def _load_setitems(self):
    items = self.pop_mark()
    d = self._into((dict, collections.OrderedDict), "SETITEMS")
    for i in range(0, len(items), 2): d[items[i]] = items[i + 1]  # an odd count raises IndexError: corrupt
  def _load_additems(self):
    items = self.pop_mark()
    self._into((set,), "ADDITEMS").update(items)
  def _load_bytearray8(self):  # pickle's own allocates the length it reads before reading the bytes
    n = struct.unpack("<Q", self.read(8))[0]
    self.append(bytearray(self.read(n)))
  def _load_binpersid(self): self.append(self.persistent_load(self.stack.pop()))
  dispatch = _Opcodes({**{getattr(pickle, op)[0]: pickle._Unpickler.dispatch[getattr(pickle, op)[0]] for op in _PLAIN_OPS},
                       pickle.REDUCE[0]: _load_reduce, pickle.BUILD[0]: _load_build, pickle.APPEND[0]: _load_append,
                       pickle.APPENDS[0]: _load_appends, pickle.SETITEM[0]: _load_setitem, pickle.SETITEMS[0]: _load_setitems,
                       pickle.ADDITEMS[0]: _load_additems, pickle.BYTEARRAY8[0]: _load_bytearray8, pickle.BINPERSID[0]: _load_binpersid})

# what corrupt bytes make the pure-Python Unpickler (and the stand-ins it calls) raise
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, struct.error, OverflowError,
                  RecursionError, OSError, zlib.error)

_MAX_DEPTH = 100  # containers nested deeper than any state dict or data set; walking them further would risk a RecursionError

def _replace_leaves(obj, fn: Callable[[Any], Any], name: str):
  """obj with every object in its dicts, lists and tuples (to any depth) replaced by fn(object): dicts and lists in
  place, tuples rebuilt; each object is replaced once however often it appears, and cycles end. Nesting deeper than
  100 raises StateFileError."""
  seen: dict[int, tuple[Any, Any]] = {}  # id -> (the object, what it became); holding the object keeps its id unique
  def walk(x, depth: int):
    if id(x) in seen: return seen[id(x)][1]
    if depth > _MAX_DEPTH: raise StateFileError(f"{name}: containers nested more than {_MAX_DEPTH} deep")
    if isinstance(x, dict):
      seen[id(x)] = (x, x)
      for k in x: x[k] = walk(x[k], depth + 1)
    elif isinstance(x, list):
      seen[id(x)] = (x, x)
      x[:] = [walk(v, depth + 1) for v in x]
    elif isinstance(x, tuple): seen[id(x)] = (x, tuple(walk(v, depth + 1) for v in x))
    else: seen[id(x)] = (x, fn(x))
    return seen[id(x)][1]
  return walk(obj, 0)

def _restricted_load(up: _RestrictedUnpickler, what: str = "pickle"):
  """up.load(), every error a StateFileError (UnsafePickleError for a refusal) that names the file."""
  try: return up.load()
  except StateFileError as e:  # from a stand-in, which does not know the file's name
    if str(e).startswith(f"{up.name}: "): raise
    raise type(e)(f"{up.name}: {e}") from None
  except _PICKLE_ERRORS as e:
    raise StateFileError(f"{up.name}: the {what} is corrupt or truncated ({type(e).__name__}: {str(e):.300})") from None

# ---- safetensors ----
_ST_DTYPES = {"BOOL": dtypes.bool, "U8": dtypes.uint8, "I8": dtypes.int8, "U16": dtypes.uint16, "I16": dtypes.int16, "U32": dtypes.uint32,
              "I32": dtypes.int32, "U64": dtypes.uint64, "I64": dtypes.int64, "F16": dtypes.float16, "BF16": dtypes.bfloat16,
              "F32": dtypes.float32, "F64": dtypes.float64}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}

def _safe_header(name: str, mem: memoryview) -> tuple[dict, dict[str, str], int]:
  """The checked header of a safetensors file: ({tensor name: (dtype, shape, start, end)}, metadata, data start)."""
  if len(mem) < 8: raise StateFileError(f"{name}: not a safetensors file: {len(mem)} bytes is too short for the 8-byte header length")
  n = struct.unpack_from("<Q", mem, 0)[0]
  if 8 + n > len(mem): raise StateFileError(f"{name}: the header length {n} runs past the end of the file ({len(mem)} bytes)")
  try: header = json.loads(bytes(mem[8:8 + n]).decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError) as e: raise StateFileError(f"{name}: the header is not valid JSON: {str(e):.300}") from None
  if not isinstance(header, dict): raise StateFileError(f"{name}: the header is a JSON {type(header).__name__}, not an object")
  meta = header.pop("__metadata__", {})
  if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
    raise StateFileError(f"{name}: __metadata__ must map strings to strings, got {meta!r:.200}")
  size, out, spans = len(mem) - 8 - n, {}, []
  for k, info in header.items():
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
      raise StateFileError(f"{name}: tensor {k!r} needs exactly dtype, shape and data_offsets in the header, got {info!r:.200}")
    dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
    if dt not in _ST_DTYPES: raise StateFileError(f"{name}: tensor {k!r} has unknown dtype {dt!r}; known: {list(_ST_DTYPES)}")
    if not isinstance(shape, list) or (nbytes := _shape_nbytes(shape, _ST_DTYPES[dt].itemsize)) is None:
      raise StateFileError(f"{name}: tensor {k!r} has a bad shape {shape!r:.200}")
    if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs) or not 0 <= offs[0] <= offs[1]:
      raise StateFileError(f"{name}: tensor {k!r} has bad data_offsets {offs!r:.200}")
    if offs[1] - offs[0] != nbytes:
      raise StateFileError(f"{name}: tensor {k!r} ({dt} {shape}) needs {nbytes} bytes but data_offsets {offs} hold {offs[1] - offs[0]}")
    if offs[1] > size: raise StateFileError(f"{name}: tensor {k!r} ends at data byte {offs[1]}, past the end of the data ({size} bytes; truncated?)")
    out[k] = (_ST_DTYPES[dt], tuple(shape), 8 + n + offs[0], 8 + n + offs[1])
    if nbytes: spans.append((offs[0], offs[1], k))
  spans.sort()
  for (_, e0, k0), (b1, _, k1) in zip(spans, spans[1:]):
    if b1 < e0: raise StateFileError(f"{name}: the data of tensors {k0!r} and {k1!r} overlap")
  return out, meta, 8 + n

def _reports(kind: str):
  """DEBUG>=1: one line per file loaded: how many tensors, how many bytes, how long (nothing runs yet: loads are lazy)."""
  def deco(fn):
    @functools.wraps(fn)
    def wrapper(src, *a, **k):
      st = time.perf_counter()
      out = fn(src, *a, **k)
      if DEBUG >= 1:
        ts: list = []
        seen: set[int] = set()
        def walk(x):
          if isinstance(x, Tensor): ts.append(x)
          elif id(x) in seen: return  # a list that holds itself
          elif isinstance(x, (dict, list, tuple)):
            seen.add(id(x))
            for v in (x.values() if isinstance(x, dict) else x): walk(v)
        walk(out)
        where = src if isinstance(src, (str, os.PathLike)) else f"{len(memoryview(src).cast('B'))} bytes in memory"
        print(f"{kind}: {where}: {len(ts)} tensors, {sum(t.nbytes() for t in ts) / 1e6:.1f} MB, {(time.perf_counter() - st) * 1e3:.1f} ms")
      return out
    return wrapper
  return deco

@_reports("safe_load")
def safe_load(src) -> dict[str, Tensor]:
  """The tensors of a safetensors file (a path or bytes-like), by name. A path is memory-mapped copy-on-write and each
  tensor is built on that memory without a copy (on the CPU), so loading costs no time or memory until values are
  used; writing a loaded tensor in place never changes the file."""
  name, mem = _open(src)
  header, _, _ = _safe_header(name, mem)
  return {k: Tensor.from_bytes(mem[b:e], dt, shape) for k, (dt, shape, b, e) in header.items()}

def safe_load_metadata(src) -> dict[str, str]:
  """The __metadata__ of a safetensors file (a path or bytes-like); {} when it has none."""
  name, mem = _open(src)
  return _safe_header(name, mem)[1]

def _raw_bytes(t: Tensor) -> bytes:
  """The little-endian bytes of t's elements in row-major order (bfloat16 as its raw bits)."""
  a = (t.bitcast(dtypes.uint16) if t.dtype == dtypes.bfloat16 else t).numpy()
  return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()

def safe_save(tensors: dict[str, Tensor], path, metadata: dict[str, str] | None = None):
  """Write tensors to a safetensors file at path, with optional string metadata. Tensors are laid out largest
  itemsize first, so every one is aligned when the file is loaded. The file is written beside path and renamed over
  it, so tensors still memory-mapped from an old file at path keep their values."""
  for k, t in tensors.items():
    if not isinstance(k, str) or k == "__metadata__": raise TypeError(f"safe_save: tensor names must be strings other than '__metadata__', got {k!r}")
    if not isinstance(t, Tensor): raise TypeError(f"safe_save: {k!r} is a {type(t).__name__}, not a Tensor")
    if t.dtype not in _ST_NAMES: raise TypeError(f"safe_save: {k!r} has dtype {t.dtype}, which safetensors cannot hold")
  if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
    raise TypeError(f"safe_save: metadata must map strings to strings, got {metadata!r:.200}")
  if tensors: Tensor.realize(*tensors.values())
  tmp = f"{os.fspath(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
  try:
    with open(tmp, "xb") as f: _safe_write(f, tensors, metadata)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp): os.unlink(tmp)
    raise

def _safe_write(f, tensors: dict[str, Tensor], metadata: dict[str, str] | None):
  """The safetensors bytes of checked, realized tensors, written to the binary file object f."""
  header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
  order, pos = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k)), 0
  for k in order:
    t = tensors[k]
    header[k] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + t.nbytes()]}
    pos += t.nbytes()
  head = json.dumps(header, separators=(",", ":")).encode()
  head += b" " * (-len(head) % 8)  # the data starts 8-aligned
  f.write(struct.pack("<Q", len(head)) + head)
  for k in order: f.write(_raw_bytes(tensors[k]))

# ---- save / load: torch.save and torch.load for nested structures, as safetensors with the structure as JSON ----
# The structure is JSON in the metadata entry "lucidgrad.save": numbers, strings, None and lists as themselves; every
# other container a one-key object naming its kind -- {"tuple": [...]}, {"dict": [[key, value], ...]} (keys encoded like
# values, so int, float, bool, None and tuple keys survive, as in torch.save), {"odict": ...} for an OrderedDict,
# {"ndarray": name} and {"tensor": name, "requires_grad": true, "device": "CUDA"} (the last two only when they apply)
# for the safetensors entry `name`. A tensor reachable twice is stored once and loaded as one tensor. No pickle: loading
# builds nothing but these.
_SAVE_KEY, _SAVE_VERSION = "lucidgrad.save", "1"
_PLAIN = (type(None), bool, int, float, str)

def _encode(obj, tensors: dict[str, Tensor], names: dict[int, str], where: str, path: set[int]):
  if isinstance(obj, np.generic) and not isinstance(obj, (np.void, np.object_)): obj = obj.item()  # a NumPy scalar: its Python value
  if isinstance(obj, _PLAIN):
    if type(obj) not in _PLAIN: raise TypeError(f"save: {where} is a {type(obj).__name__} (a subclass of {type(obj).__mro__[1].__name__}): convert it to a plain one")
    return obj
  if isinstance(obj, (Tensor, np.ndarray)):
    if id(obj) not in names:
      t = obj if isinstance(obj, Tensor) else Tensor(obj)
      if t.dtype not in _ST_NAMES: raise TypeError(f"save: {where} has dtype {t.dtype}, which a file cannot hold")
      names[id(obj)] = str(len(tensors))
      tensors[names[id(obj)]] = t.detach()
    if isinstance(obj, np.ndarray): return {"ndarray": names[id(obj)]}
    return {"tensor": names[id(obj)], **({"requires_grad": True} if obj.requires_grad else {}), **({"device": obj.device} if obj.device != "CPU" else {})}
  if type(obj) not in (list, tuple, dict, collections.OrderedDict):
    raise TypeError(f"save: {where} is a {type(obj).__name__}; save takes Tensors, NumPy arrays, numbers, strings and None, in dicts, lists and "
                    "tuples (no pickle: other objects cannot be rebuilt without running code)")
  if id(obj) in path: raise ValueError(f"save: {where} contains itself")
  if len(path) >= _MAX_DEPTH: raise ValueError(f"save: {where} is nested more than {_MAX_DEPTH} containers deep")
  path.add(id(obj))
  if isinstance(obj, dict):
    for k in obj:
      if not isinstance(k, (*_PLAIN, tuple, np.generic)):
        raise TypeError(f"save: {where} has a key of type {type(k).__name__} ({k!r:.50}); keys must be strings, numbers, None or tuples of them")
    out: Any = {"odict" if type(obj) is collections.OrderedDict else "dict":
                [[_encode(k, tensors, names, f"a key of {where}", path), _encode(v, tensors, names, f"{where}[{k!r}]", path)] for k, v in obj.items()]}
  else:
    items = [_encode(v, tensors, names, f"{where}[{i}]", path) for i, v in enumerate(obj)]
    out = items if type(obj) is list else {"tuple": items}
  path.discard(id(obj))
  return out

def save(obj, f):
  """torch.save without pickle: `obj` -- Tensors, NumPy arrays, numbers, strings and None, in any nesting of dicts
  (OrderedDicts too; keys may be strings, numbers, None or tuples), lists and tuples -- written to a safetensors file at
  path `f` (or into a writable binary file object). The tensors are the file's entries, named "0", "1", ...; the
  structure is JSON in its metadata. A tensor found twice is written once. NumPy scalars are saved as Python numbers.
  Anything else (a class instance, a set, a namedtuple) raises TypeError naming where it is: rebuilding it would need pickle."""
  tensors: dict[str, Tensor] = {}
  structure = _encode(obj, tensors, {}, "the object", set())
  meta = {_SAVE_KEY: json.dumps(structure, separators=(",", ":")), f"{_SAVE_KEY}.version": _SAVE_VERSION}
  if isinstance(f, (str, os.PathLike)): return safe_save(tensors, f, meta)
  if not hasattr(f, "write"): raise TypeError(f"save: f must be a path or a binary file object, got a {type(f).__name__}")
  if tensors: Tensor.realize(*tensors.values())
  _safe_write(f, tensors, meta)

class _Decoder:
  """The structure save() wrote, rebuilt over the file's tensors; anything save() never writes is a StateFileError."""
  def __init__(self, name: str, tensors: dict[str, Tensor], device: str | None):
    self.name, self.tensors, self.device, self.made = name, tensors, device, {}
  def bad(self, x) -> StateFileError: return StateFileError(f"{self.name}: the saved structure holds {x!r:.100}, which save() never writes (corrupt?)")
  def tensor(self, x: dict, kind: str):
    key = (x[kind], kind, bool(x.get("requires_grad")), x.get("device"))
    if key in self.made: return self.made[key]  # one tensor saved twice is one tensor loaded
    if not isinstance(x[kind], str) or x[kind] not in self.tensors: raise StateFileError(f"{self.name}: the saved structure names a tensor {x[kind]!r:.50} the file does not hold")
    t = self.tensors[x[kind]]
    if kind == "ndarray": out: Any = t.numpy()
    else:
      if (dev := self.device or x.get("device")) not in (None, t.device): t = t.to(dev).realize()
      out = t.requires_grad_() if x.get("requires_grad") else t
    self.made[key] = out
    return out
  def __call__(self, x, depth: int = 0):
    if depth > _MAX_DEPTH: raise StateFileError(f"{self.name}: the saved structure is nested more than {_MAX_DEPTH} deep")
    if x is None or isinstance(x, (bool, int, float, str)): return x
    if isinstance(x, list): return [self(v, depth + 1) for v in x]
    if not isinstance(x, dict) or not x: raise self.bad(x)
    kind, body = next(iter(x.items()))
    if kind in ("tensor", "ndarray"): return self.tensor(x, kind)
    if len(x) != 1 or not isinstance(body, list): raise self.bad(x)
    if kind == "tuple": return tuple(self(v, depth + 1) for v in body)
    if kind not in ("dict", "odict") or not all(isinstance(kv, list) and len(kv) == 2 for kv in body): raise self.bad(x)
    try: return (collections.OrderedDict if kind == "odict" else dict)((self(k, depth + 1), self(v, depth + 1)) for k, v in body)
    except TypeError: raise StateFileError(f"{self.name}: a saved dict has a key that cannot be a key (corrupt?)") from None

def load(f, map_location: str | None = None, *, weights_only: bool = True, mmap: bool | None = None):
  """torch.load without running code: what save() wrote, rebuilt (tensors memory-mapped from the file as safe_load
  makes them, with requires_grad and device as saved, or all on `map_location`, a device name); a plain safetensors
  file as {name: tensor}; a torch.save file (zip or legacy) through torch_load, whose pickle may build nothing but
  tensors and containers. `f`: a path, bytes, or a binary file object. weights_only and mmap are accepted and change
  nothing: loading never runs code, and paths are always memory-mapped. A corrupt file raises StateFileError naming it."""
  if map_location is not None and not isinstance(map_location, str):
    raise TypeError(f"load: map_location must be a device name like 'CPU', got a {type(map_location).__name__} (functions and dicts are not supported)")
  device = Device.canonicalize(map_location)
  if hasattr(f, "read") and not isinstance(f, (str, os.PathLike)): f = f.read()
  name, mem = _open(f)
  move = lambda x: x.to(device).realize() if isinstance(x, Tensor) and device not in (None, x.device) else x
  # a zip archive, or a pickle where a safetensors file has its header's "{": what torch.save writes
  if bytes(mem[:4]) == b"PK\x03\x04" or (bytes(mem[:1]) == b"\x80" and bytes(mem[8:9]) != b"{"): return _replace_leaves(torch_load(f), move, name)
  header, meta, _ = _safe_header(name, mem)
  tensors = {k: Tensor.from_bytes(mem[b:e], dt, shape) for k, (dt, shape, b, e) in header.items()}
  if _SAVE_KEY not in meta: return {k: move(t) for k, t in tensors.items()}
  if (version := meta.get(f"{_SAVE_KEY}.version")) != _SAVE_VERSION:
    raise StateFileError(f"{name}: written by save() in format version {version!r}; this lucidgrad reads version {_SAVE_VERSION}")
  try: structure = json.loads(meta[_SAVE_KEY])
  except (ValueError, RecursionError) as e: raise StateFileError(f"{name}: the saved structure is not valid JSON: {str(e):.200}") from None
  return _Decoder(name, tensors, device)(structure)

# ---- PyTorch .pth / .pt ----
# The pickle of a torch.save file is run by an Unpickler that knows only the globals below, each a stand-in of ours:
# rebuilding a tensor records where its values are, and nothing a pickle names is ever imported or called.
_TORCH_DTYPES = {"bool": dtypes.bool, "uint8": dtypes.uint8, "int8": dtypes.int8, "int16": dtypes.int16, "short": dtypes.int16,
                 "int32": dtypes.int32, "int": dtypes.int32, "int64": dtypes.int64, "long": dtypes.int64, "uint16": dtypes.uint16,
                 "uint32": dtypes.uint32, "uint64": dtypes.uint64, "float16": dtypes.float16, "half": dtypes.float16,
                 "bfloat16": dtypes.bfloat16, "float32": dtypes.float32, "float": dtypes.float32, "float64": dtypes.float64,
                 "double": dtypes.float64}
_TORCH_STORAGES = {"FloatStorage": dtypes.float32, "HalfStorage": dtypes.float16, "BFloat16Storage": dtypes.bfloat16,
                   "DoubleStorage": dtypes.float64, "LongStorage": dtypes.int64, "IntStorage": dtypes.int32, "ShortStorage": dtypes.int16,
                   "CharStorage": dtypes.int8, "ByteStorage": dtypes.uint8, "BoolStorage": dtypes.bool}

@dataclass(frozen=True)
class _TorchDType:
  dtype: DType

@dataclass(frozen=True)
class _StorageType:
  dtype: DType  # uint8 for UntypedStorage: its size is in bytes

@dataclass(eq=False)
class _Storage:
  key: str
  dtype: DType
  numel: int
  mem: memoryview | None = None  # found after the pickle is read

@dataclass(frozen=True, eq=False)
class _TensorRef:
  """What _rebuild_tensor asked for: the tensor is built once every storage is found and every view checked."""
  storage: _Storage
  offset: int
  size: tuple
  stride: tuple
  dtype: DType

def _view(storage, offset, size, stride, dtype: DType) -> _TensorRef:
  """A checked _TensorRef: a storage, ints in [0, 2**63) and a shape NumPy can hold (its bounds are checked once the
  storage's bytes are found)."""
  if not isinstance(storage, _Storage): raise StateFileError(f"a tensor is rebuilt from a {type(storage).__name__}, not a storage")
  size, stride = tuple(size), tuple(stride)
  if not (len(size) == len(stride) and all(_is_int(x) and 0 <= x < 2**63 for x in (offset, *size, *stride))
          and _shape_nbytes(size, dtype.itemsize) is not None):
    raise StateFileError(f"a tensor has a bad layout: offset {offset!r:.50}, size {size!r:.200}, stride {stride!r:.200}")
  return _TensorRef(storage, offset, size, stride, dtype)

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
  return _view(storage, storage_offset, size, stride, storage.dtype if isinstance(storage, _Storage) else dtypes.uint8)

def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
  if not isinstance(dtype, _TorchDType): raise StateFileError(f"a tensor is rebuilt with dtype {dtype!r:.100}, not a torch dtype")
  return _view(storage, storage_offset, size, stride, dtype.dtype)

def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  if not isinstance(data, _TensorRef): raise StateFileError(f"a parameter is rebuilt from a {type(data).__name__}, not a tensor")
  return data

def _torch_device(*a) -> str:
  if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in a) or len(a) > 2: raise StateFileError(f"a bad torch.device{a!r:.100}")
  return ":".join(str(x) for x in a)

# every global a torch.save pickle of tensors, parameters and their containers names, each mapped to a stand-in of ours
_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
  ("collections", "OrderedDict"): collections.OrderedDict,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2, ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter, ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
  ("torch", "Size"): tuple, ("torch", "device"): _torch_device,
  ("torch", "UntypedStorage"): _StorageType(dtypes.uint8), ("torch.storage", "UntypedStorage"): _StorageType(dtypes.uint8),
  **{("torch", k): _StorageType(v) for k, v in _TORCH_STORAGES.items()},
  **{("torch", k): _TorchDType(v) for k, v in _TORCH_DTYPES.items()},
}

class _TorchUnpickler(_RestrictedUnpickler):
  """Rebuilds tensors as _TensorRefs on _Storages named by persistent id ("storage", type, key, location, numel[, None])."""
  globals_table = _TORCH_GLOBALS
  def __init__(self, file: _PickleFile, name: str):
    super().__init__(file, name)
    self.storages: dict[str, _Storage] = {}
    self.refs: list[_TensorRef] = []
  def find_class(self, module: str, name: str):
    if (module, name) not in self.globals_table and module == "torch" and \
       (name.endswith("Storage") or name.startswith(("float8", "complex", "cfloat", "cdouble", "chalf", "quint", "qint", "float4"))):
      raise StateFileError(f"{self.name}: torch.{name}: its dtype has no lucidgrad dtype")
    return super().find_class(module, name)
  def reduce(self, fn, args):
    if isinstance(out := fn(*args), _TensorRef) and fn is not _rebuild_parameter: self.refs.append(out)
    return out
  def build(self, inst, state):
    # torch.save writes a state dict's _metadata (per-module versions) as the OrderedDict's __dict__; nothing here needs it
    if type(inst) is not collections.OrderedDict or not isinstance(state, dict): super().build(inst, state)
  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid[:1] == ("storage",)): self.refuse(f"the persistent id {pid!r:.100}, not a torch storage")
    if not (len(pid) in (5, 6) and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _is_int(pid[4]) and 0 <= pid[4] < 2**62):
      raise StateFileError(f"{self.name}: a bad storage id {pid!r:.200}")
    if len(pid) == 6 and pid[5] is not None: raise StateFileError(f"{self.name}: storage views (from very old PyTorch versions) are not supported")
    st = self.storages.setdefault(pid[2], _Storage(pid[2], pid[1].dtype, pid[4]))
    if st.dtype != pid[1].dtype: raise StateFileError(f"{self.name}: storage {st.key} is read as both {st.dtype} and {pid[1].dtype}")
    return st

def _unpickle(name: str, f: _PickleFile, what: str, unpickler: _TorchUnpickler | None = None):
  return _restricted_load(unpickler or _TorchUnpickler(f, name), f"{what} pickle")

def _strided(base: Tensor, offset: int, size: tuple, stride: tuple) -> Tensor:
  """torch.as_strided of the flat tensor base, by movement ops only (shrink, reshape, pad, permute, expand): the
  strided axes, largest stride first, each cut windows out of the span the next ones cover."""
  if math.prod(size) == 0: return base.shrink(((0, 0),)).reshape(size)
  axes = sorted((i for i, (n, s) in enumerate(zip(size, stride)) if n > 1 and s > 0), key=lambda i: -stride[i])
  ns, ss = [size[i] for i in axes], [stride[i] for i in axes]
  spans = [1 + sum((n - 1) * s for n, s in zip(ns[j:], ss[j:])) for j in range(len(axes) + 1)]
  x = base.shrink(((offset, offset + spans[0]),))
  if all(s == math.prod(ns[j + 1:]) for j, s in enumerate(ss)): x = x.reshape(ns)  # a permuted contiguous layout
  else:
    for j, (n, s) in enumerate(zip(ns, ss)):
      w = spans[j + 1]  # each of the n windows starts s after the last and covers the axes after this one
      if s >= w:
        x = x.pad(tuple((0, 0) for _ in range(x.ndim - 1)) + ((0, n * s - spans[j]),))
        x = x.reshape(x.shape[:-1] + (n, s)).shrink(tuple(None for _ in range(x.ndim - 1)) + (None, (0, w)))
      else: x = x.unfold(x.ndim - 1, w, s)
    x = x.reshape(tuple(ns))
  x = x.permute([axes.index(i) for i in sorted(axes)])
  return x.reshape(tuple(n if i in axes else 1 for i, n in enumerate(size))).expand(size)

def _torch_tensors(name: str, unpickler: _TorchUnpickler, result):
  """Check every view against its storage, then build the tensors and put them where the pickle had them."""
  viewed_as: dict[str, DType] = {}
  for r in unpickler.refs:
    # torch.save refuses to write one storage viewed as two dtypes; refusing it here also means each storage's bytes
    # become at most one base tensor (one copy where the memory is read-only)
    if viewed_as.setdefault(r.storage.key, r.dtype) != r.dtype:
      raise StateFileError(f"{name}: storage {r.storage.key} is viewed as both {viewed_as[r.storage.key].name} and {r.dtype.name}")
    n = len(r.storage.mem) // r.dtype.itemsize
    if 0 not in r.size and r.offset + sum((x - 1) * s for x, s in zip(r.size, r.stride)) >= n:
      raise StateFileError(f"{name}: a tensor of size {r.size}, stride {r.stride}, offset {r.offset} reads past the end of its storage "
                           f"{r.storage.key} ({n} elements of {r.dtype.name})")
  bases: dict[str, Tensor] = {}
  def build(r: _TensorRef) -> Tensor:
    if r.storage.key not in bases:
      n = len(r.storage.mem) // r.dtype.itemsize
      bases[r.storage.key] = Tensor.from_bytes(r.storage.mem[:n * r.dtype.itemsize], r.dtype, (n,))
    return _strided(bases[r.storage.key], r.offset, r.size, r.stride)
  return _replace_leaves(result, lambda x: build(x) if isinstance(x, _TensorRef) else x, name)

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c

@_reports("torch_load")
def torch_load(src) -> Any:
  """What torch.save saved in a .pth/.pt file (a path or bytes-like), with every tensor a lucidgrad Tensor: for a
  state_dict, a dict[str, Tensor]; nested dicts, lists and tuples keep their structure. Reads the zip format (the
  default since PyTorch 1.6) and the older pickle-stream format, without importing torch: the pickle may name only the
  globals needed to rebuild tensors, anything else (os.system, eval, ...) raises UnsafePickleError uncalled. Tensors
  from a stored (uncompressed) zip entry or the old format use the file's memory-mapped bytes without a copy."""
  name, mem = _open(src)
  if bytes(mem[:4]) == b"PK\x03\x04": return _torch_zip(name, mem)
  if len(mem) > 262 and bytes(mem[257:262]) == b"ustar":
    raise StateFileError(f"{name}: the tar format of PyTorch before 0.4 is not supported; re-save the file with a newer torch.save")
  if bytes(mem[:1]) != b"\x80": raise StateFileError(f"{name}: not a PyTorch file (neither a zip archive nor a pickle)")
  return _torch_legacy(name, mem)

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error, NotImplementedError, RuntimeError, zlib.error)
_DEFLATE_MAX_RATIO = 1032  # deflate never makes data more than 1032 times larger: a bigger declared size is corrupt

def _zip_entry(name: str, zf: zipfile.ZipFile, mem: memoryview, info: zipfile.ZipInfo, nbytes: int) -> tuple[memoryview, tuple[int, int]]:
  """The first nbytes of a zip entry and the span of the file it lies in. A stored entry is the file's memory itself
  (no copy); a deflated one is decompressed, at most nbytes. Every size is checked against the file first."""
  h, what = info.header_offset, info.filename
  _check_span(name, f"the zip header of {what}", h, 30, len(mem))
  if bytes(mem[h:h + 4]) != b"PK\x03\x04": raise StateFileError(f"{name}: bad zip header for {what}")
  start = h + 30 + struct.unpack_from("<H", mem, h + 26)[0] + struct.unpack_from("<H", mem, h + 28)[0]
  if info.file_size < nbytes: raise StateFileError(f"{name}: {what} holds {info.file_size} bytes, fewer than the {nbytes} needed (truncated?)")
  if info.compress_type == zipfile.ZIP_STORED:
    _check_span(name, what, start, nbytes, len(mem))
    return mem[start:start + nbytes], (h, start + nbytes)
  if info.compress_type != zipfile.ZIP_DEFLATED:
    raise StateFileError(f"{name}: {what} uses zip compression method {info.compress_type}, not stored or deflated")
  _check_span(name, f"the compressed {what}", start, info.compress_size, len(mem))
  if nbytes > _DEFLATE_MAX_RATIO * info.compress_size + 64:
    raise StateFileError(f"{name}: {what} claims {nbytes} bytes, more than its {info.compress_size} compressed bytes can hold")
  try:
    with zf.open(info) as f: out = f.read(nbytes)
  except _ZIP_ERRORS as e: raise StateFileError(f"{name}: cannot read {what} from the zip archive ({e})") from None
  if len(out) != nbytes: raise StateFileError(f"{name}: {what} holds {len(out)} bytes, fewer than the {nbytes} needed (truncated?)")
  return memoryview(bytearray(out)), (h, start + info.compress_size)

def _torch_zip(name: str, mem: memoryview):
  try:
    zf = zipfile.ZipFile(_MemFile(mem))
    infos = {i.filename: i for i in zf.infolist()}
  except _ZIP_ERRORS as e: raise StateFileError(f"{name}: a corrupt zip archive ({e})") from None
  pkls = sorted((n for n in infos if n.endswith("data.pkl") and n.count("/") <= 1), key=len)
  if not pkls: raise StateFileError(f"{name}: a zip archive without data.pkl, so not written by torch.save")
  prefix = pkls[0][:-len("data.pkl")]
  if (bo := infos.get(prefix + "byteorder")) is not None and bytes(_zip_entry(name, zf, mem, bo, bo.file_size)[0]) != b"little":
    raise StateFileError(f"{name}: big-endian PyTorch files are not supported")
  if any(n.endswith("constants.pkl") for n in infos): raise StateFileError(f"{name}: a TorchScript archive (torch.jit.save) is not supported")
  pkl = infos[pkls[0]]
  unpickler = _TorchUnpickler(_PickleFile(name, _zip_entry(name, zf, mem, pkl, pkl.file_size)[0]), name)
  result = _unpickle(name, unpickler.file, "data.pkl", unpickler)
  spans = []
  for st in unpickler.storages.values():
    if (info := infos.get(entry := f"{prefix}data/{st.key}")) is None:
      raise StateFileError(f"{name}: storage {entry} is missing from the zip archive")
    st.mem, span = _zip_entry(name, zf, mem, info, st.numel * st.dtype.itemsize)
    spans.append((*span, entry))
  # two entries sharing bytes would make one stretch of the file several tensors (or be decompressed again and again)
  for (_, e0, k0), (b1, _, k1) in zip(sorted(spans), sorted(spans)[1:]):
    if b1 < e0: raise StateFileError(f"{name}: the zip entries {k0} and {k1} overlap")
  return _torch_tensors(name, unpickler, result)

def _torch_legacy(name: str, mem: memoryview):
  f = _PickleFile(name, mem)
  if _unpickle(name, f, "magic number") != _LEGACY_MAGIC: raise StateFileError(f"{name}: not a PyTorch file (bad magic number)")
  if _unpickle(name, f, "protocol version") != 1001: raise StateFileError(f"{name}: unknown PyTorch legacy protocol version")
  info = _unpickle(name, f, "system info")
  if not isinstance(info, dict) or info.get("little_endian") is not True: raise StateFileError(f"{name}: big-endian PyTorch files are not supported")
  unpickler = _TorchUnpickler(f, name)
  result = _unpickle(name, f, "data", unpickler)
  keys = _unpickle(name, f, "storage key")
  if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
    raise StateFileError(f"{name}: the storage keys are not a list of strings")
  pos = f.pos
  for key in keys:
    if (st := unpickler.storages.get(key)) is None: raise StateFileError(f"{name}: storage {key!r} is listed but never used")
    _check_span(name, f"the size of storage {key}", pos, 8, len(mem))
    n = struct.unpack_from("<q", mem, pos)[0]
    if n != st.numel: raise StateFileError(f"{name}: storage {key} holds {n} elements, the pickle says {st.numel}")
    _check_span(name, f"storage {key}", pos + 8, n * st.dtype.itemsize, len(mem))
    st.mem, pos = mem[pos + 8:pos + 8 + n * st.dtype.itemsize], pos + 8 + n * st.dtype.itemsize
  if (lost := [k for k, st in unpickler.storages.items() if st.mem is None]): raise StateFileError(f"{name}: storages {lost} are missing")
  return _torch_tensors(name, unpickler, result)

# ---- GGUF ----
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY, _GGUF_MAX_DEPTH = 8, 9, 16
_GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
               13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
               22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0"}
_GGML_PLAIN = {0: dtypes.float32, 1: dtypes.float16, 30: dtypes.bfloat16, 28: dtypes.float64, 24: dtypes.int8, 25: dtypes.int16,
               26: dtypes.int32, 27: dtypes.int64}

def _f16(lo: Tensor, hi: Tensor) -> Tensor:
  """float32 from the two bytes (uint8 tensors, low byte first) of a float16."""
  return (lo.cast(dtypes.uint16) | (hi.cast(dtypes.uint16) << 8)).bitcast(dtypes.float16).cast(dtypes.float32)

def _bits(b: Tensor, axis: int) -> Tensor:
  """The bits (0 or 1) of the uint8 tensor b, lowest first, along a new axis of size 8 inserted at `axis`."""
  shifts = Tensor.arange(8, dtype=dtypes.uint8, device=b.device).reshape([8 if i == axis else 1 for i in range(b.ndim + 1)])
  return (b.unsqueeze(axis) >> shifts) & 1

def _nibbles(q: Tensor) -> Tensor:
  """The 32 values of 16 bytes (the last axis) that hold value j in the low nibble of byte j, value j+16 in its high:
  one shift by 0 or 4 (no cat, whose padded halves are gated loads, lane by lane, in a kernel that reads them)."""
  shifts = (Tensor.arange(2, dtype=dtypes.uint8, device=q.device) * 4).reshape(2, 1)
  return ((q.unsqueeze(-2) >> shifts) & 15).reshape(*q.shape[:-1], 32)

def _qh32(qh: Tensor) -> Tensor:
  """Q5_0/Q5_1's fifth bits: bit j of the 4 bytes read as a little-endian uint32 belongs to value j (blocks, 32)."""
  return _bits(qh, 2).reshape(-1, 32)

# Blocks of 32 values are unpacked from planes: each field of every block (its quants, its scale, its min) copied at
# load into a buffer of its own, the scales as float16. A kernel that reads the file's blocks in place reads a block's
# quants and scale bytes as one run of addresses, which its vector loads cut where the 18-34 byte blocks fall, not where
# the quants do: lane-by-lane code. Read from planes, a matmul on the quantised weights unpacks 16 values with a few
# vector instructions (the issue-13 note in docs/llm/gguf.md measures it). Still ~4.5-9 bits a value, not 32.
def _planes(b: Tensor, quants: tuple[int, int], *scales: int, dtype=dtypes.uint8) -> list[Tensor]:
  """[bytes quants[0]:quants[1] of every block as `dtype`, then the float16 at each byte offset in `scales` as float32
  (blocks, 1)], each realized into a buffer of its own now (a bitcast in the kernel instead cost GCC its vectors)."""
  q = b[:, quants[0]:quants[1]].bitcast(dtype).contiguous()
  sc = [_f16(b[:, o:o + 1], b[:, o + 1:o + 2]).cast(dtypes.float16).contiguous() for o in scales]
  q.realize(*sc)
  return [q, *[t.cast(dtypes.float32) for t in sc]]

def _dequant_q8_0(b: Tensor) -> Tensor:  # 34 bytes: f16 d, 32 x int8 q; x = d * q
  q, d = _planes(b, (2, 34), 0, dtype=dtypes.int8)
  return d * q.cast(dtypes.float32)

def _dequant_q4_0(b: Tensor) -> Tensor:  # 18 bytes: f16 d, 16 bytes of nibbles (low: x0..x15, high: x16..x31); x = (q - 8) * d
  q, d = _planes(b, (2, 18), 0)
  return (_nibbles(q).cast(dtypes.float32) - 8) * d

def _dequant_q4_1(b: Tensor) -> Tensor:  # 20 bytes: f16 d, f16 m, 16 bytes of nibbles as Q4_0; x = d * q + m
  q, d, m = _planes(b, (4, 20), 0, 2)
  return _nibbles(q).cast(dtypes.float32) * d + m

def _dequant_q5_0(b: Tensor) -> Tensor:  # 22 bytes: f16 d, 4 bytes of fifth bits, 16 bytes of nibbles as Q4_0; x = (q - 16) * d
  q, d = _planes(b, (6, 22), 0)
  qh = b[:, 2:6].contiguous().realize()
  return ((_nibbles(q) | (_qh32(qh) << 4)).cast(dtypes.float32) - 16) * d

def _dequant_q5_1(b: Tensor) -> Tensor:  # 24 bytes: f16 d, f16 m, 4 bytes of fifth bits, 16 bytes of nibbles; x = d * q + m
  q, d, m = _planes(b, (8, 24), 0, 2)
  qh = b[:, 4:8].contiguous().realize()
  return (_nibbles(q) | (_qh32(qh) << 4)).cast(dtypes.float32) * d + m

def _k_scales_mins(s: Tensor) -> tuple[Tensor, Tensor]:
  """The 8 (scale, min) pairs, 6 bits each, packed in Q4_K's and Q5_K's 12 bytes: float32 (blocks, 8) each."""
  s0, s1, s2 = s[:, 0:4], s[:, 4:8], s[:, 8:12]
  # sub-blocks 0-3: the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7: the nibbles of bytes 8-11 under the top 2 bits of 0-3 / 4-7
  sc = (s0 & 63).cat((s2 & 15) | ((s0 >> 6) << 4), dim=1).cast(dtypes.float32)
  mn = (s1 & 63).cat((s2 >> 4) | ((s1 >> 6) << 4), dim=1).cast(dtypes.float32)
  return sc, mn

def _k_nibbles(qs: Tensor) -> Tensor:
  """Q4_K's and Q5_K's 128 bytes of nibbles as (blocks, 8 sub-blocks, 32): byte l of each 32 holds value l of sub-block 2j
  in its low nibble and of 2j+1 in its high."""
  q = qs.reshape(-1, 4, 1, 32)
  return (q & 15).cat(q >> 4, dim=2).reshape(-1, 8, 32)

def _dequant_q4_k(b: Tensor) -> Tensor:
  """144 bytes for 256 values in 8 sub-blocks of 32: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs, 128 bytes of
  nibbles; x = d*scale * q - dmin*min."""
  d, dmin, (sc, mn) = _f16(b[:, 0:1], b[:, 1:2]), _f16(b[:, 2:3], b[:, 3:4]), _k_scales_mins(b[:, 4:16])
  q = _k_nibbles(b[:, 16:144]).cast(dtypes.float32)
  return ((d * sc).unsqueeze(-1) * q - (dmin * mn).unsqueeze(-1)).reshape(-1, 256)

def _dequant_q5_k(b: Tensor) -> Tensor:
  """176 bytes for 256 values: Q4_K's f16 d, f16 dmin and 12 bytes of scales and mins, then 32 bytes qh and 128 bytes of
  nibbles laid out as Q4_K's; value l of sub-block s has its fifth bit in bit s of qh[l]. x = d*scale * q - dmin*min."""
  d, dmin, (sc, mn) = _f16(b[:, 0:1], b[:, 1:2]), _f16(b[:, 2:3], b[:, 3:4]), _k_scales_mins(b[:, 4:16])
  q = (_k_nibbles(b[:, 48:176]) | (_bits(b[:, 16:48], 1) << 4)).cast(dtypes.float32)
  return ((d * sc).unsqueeze(-1) * q - (dmin * mn).unsqueeze(-1)).reshape(-1, 256)

def _dequant_q6_k(b: Tensor) -> Tensor:
  """210 bytes for 256 values: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales (one per 16
  values), f16 d; x = d * scale * (q - 32). Each half of 128 values uses 64 ql, 32 qh and 8 scales: value 32k + l (k < 4,
  l < 32) has the low (k < 2) or high nibble of ql[l + 32 (k % 2)] and bits 2k, 2k+1 of qh[l]."""
  ql, qh, sc, d = b[:, 0:128].reshape(-1, 2, 2, 32), b[:, 128:192].reshape(-1, 2, 1, 32), b[:, 192:208], _f16(b[:, 208:209], b[:, 209:210])
  lo = (ql & 15).cat(ql >> 4, dim=2)  # (blocks, half, k, l)
  hi = (qh >> Tensor([0, 2, 4, 6], dtype=dtypes.uint8, device=b.device).reshape(1, 1, 4, 1)) & 3
  q = (lo | (hi << 4)).cast(dtypes.float32) - 32
  scale = d.reshape(-1, 1, 1, 1) * sc.bitcast(dtypes.int8).cast(dtypes.float32).reshape(-1, 2, 4, 2)
  return (scale.unsqueeze(-1) * q.reshape(-1, 2, 4, 2, 16)).reshape(-1, 256)

# ggml type: (values per block, bytes per block, dequantiser)
_GGML_QUANTS: dict[int, tuple[int, int, Callable[[Tensor], Tensor]]] = {
  8: (32, 34, _dequant_q8_0), 2: (32, 18, _dequant_q4_0), 3: (32, 20, _dequant_q4_1), 6: (32, 22, _dequant_q5_0),
  7: (32, 24, _dequant_q5_1), 12: (256, 144, _dequant_q4_k), 13: (256, 176, _dequant_q5_k), 14: (256, 210, _dequant_q6_k)}

class _Cursor:
  """Reads little-endian values from mem, every read checked against its end."""
  def __init__(self, name: str, mem: memoryview): self.name, self.mem, self.pos = name, mem, 0
  def take(self, fmt: str, what: str):
    n = struct.calcsize(fmt)
    _check_span(self.name, what, self.pos, n, len(self.mem))
    out = struct.unpack_from(fmt, self.mem, self.pos)
    self.pos += n
    return out if len(out) != 1 else out[0]
  def string(self, what: str) -> str:
    n = self.take("<Q", what)
    _check_span(self.name, what, self.pos, n, len(self.mem))
    raw, self.pos = bytes(self.mem[self.pos:self.pos + n]), self.pos + n
    try: return raw.decode("utf-8")
    except UnicodeDecodeError: raise StateFileError(f"{self.name}: {what} is not valid UTF-8") from None
  def strings(self, n: int, what: str) -> list[str]:
    """n strings in a row: string() unrolled, since a tokenizer's vocabulary and merges are ~100k of them."""
    mem, pos, size, out = self.mem, self.pos, len(self.mem), []
    try:
      for _ in range(n):  # each length is checked before it is used, so a huge count still ends at the file's end
        if pos + 8 > size: break
        k = int.from_bytes(mem[pos:pos + 8], "little")
        if pos + 8 + k > size: break
        out.append(str(mem[pos + 8:pos + 8 + k], "utf-8"))
        pos += 8 + k
    except UnicodeDecodeError: raise StateFileError(f"{self.name}: {what} is not valid UTF-8") from None
    self.pos = pos
    if len(out) < n: self.string(what)  # raises: the error names the bytes the next string needed
    return out
  def value(self, vtype: int, what: str, depth: int = 0):
    if vtype in _GGUF_SCALARS: return self.take(_GGUF_SCALARS[vtype], what)
    if vtype == _GGUF_STRING: return self.string(what)
    if vtype == _GGUF_ARRAY:
      etype, n = self.take("<IQ", what)
      if etype in _GGUF_SCALARS:  # numbers in one read, checked first (not by take, which unwraps a single value)
        fmt = f"<{n}{_GGUF_SCALARS[etype][1]}"
        _check_span(self.name, what, self.pos, n * struct.calcsize(_GGUF_SCALARS[etype]), len(self.mem))
        out, self.pos = list(struct.unpack_from(fmt, self.mem, self.pos)), self.pos + struct.calcsize(fmt)
        return out
      if etype == _GGUF_STRING: return self.strings(n, what)
      # arrays of arrays nest 12 bytes a level: bounded, so a corrupt file cannot recurse until Python gives up
      if etype == _GGUF_ARRAY and depth >= _GGUF_MAX_DEPTH: raise StateFileError(f"{self.name}: {what} nests arrays more than {_GGUF_MAX_DEPTH} deep")
      return [self.value(etype, what, depth + 1) for _ in range(n)]  # each read is checked, so a huge count still ends at the file's end
    raise StateFileError(f"{self.name}: {what} has unknown value type {vtype}")

def _gguf_header(name: str, mem: memoryview) -> tuple[dict[str, Any], list[tuple], int]:
  """(metadata, [(name, dims fastest first, type, offset)] per tensor, the header's end) of a GGUF v2/v3 file."""
  c = _Cursor(name, mem)
  if len(mem) < 4 or bytes(mem[:4]) != b"GGUF": raise StateFileError(f"{name}: not a GGUF file (the magic is {bytes(mem[:4])!r}, not b'GGUF')")
  c.pos = 4
  version = c.take("<I", "the version")
  if version not in (2, 3):
    if version & 0xffff == 0 and (version >> 24) in (2, 3): raise StateFileError(f"{name}: big-endian GGUF files are not supported")
    raise StateFileError(f"{name}: GGUF version {version} is not supported (only 2 and 3)")
  n_tensors, n_kv = c.take("<QQ", "the tensor and metadata counts")
  meta: dict[str, Any] = {}
  for i in range(n_kv):
    key = c.string(f"metadata key {i}")
    if key in meta: raise StateFileError(f"{name}: metadata key {key!r} appears twice")
    meta[key] = c.value(c.take("<I", f"the type of metadata {key!r}"), f"metadata {key!r}")
  infos = []
  for i in range(n_tensors):
    tname = c.string(f"the name of tensor {i}")
    ndim = c.take("<I", f"the rank of tensor {tname!r}")
    if ndim > 8: raise StateFileError(f"{name}: tensor {tname!r} claims {ndim} dimensions")
    dims = c.take(f"<{ndim}Q", f"the dims of tensor {tname!r}") if ndim else ()
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    ttype, off = c.take("<IQ", f"the type and offset of tensor {tname!r}")
    infos.append((tname, dims, ttype, off))
  return meta, infos, c.pos

@_reports("gguf_metadata")
def gguf_metadata(src) -> dict[str, Any]:
  """The metadata of a GGUF v2/v3 file (a path or bytes-like) as plain Python values (ints, floats, strings, lists),
  without reading its tensors: a model's hyper-parameters, tokenizer and chat template before any weight is built."""
  return _gguf_header(*_open(src))[0]

@_reports("gguf_load")
def gguf_load(src) -> tuple[dict[str, Any], dict[str, Tensor]]:
  """(metadata, tensors) of a GGUF v2/v3 file (a path or bytes-like). Shapes are in PyTorch order (GGUF lists dims
  fastest first). F32, F16, BF16, F64 and integer tensors use the memory-mapped file without a copy; Q8_0, Q4_0, Q4_1,
  Q5_0, Q5_1, Q4_K, Q5_K and Q6_K come back as lazy float32 tensors whose kernel unpacks the raw blocks when realized (so
  it can fuse into the first use, e.g. an assign in load_state_dict). Other types raise StateFileError naming the tensor,
  its type and the supported ones."""
  name, mem = _open(src)
  meta, infos, end = _gguf_header(name, mem)
  align = meta.get("general.alignment", 32)
  if not _is_int(align) or align <= 0: raise StateFileError(f"{name}: general.alignment must be a positive integer, got {align!r}")
  start = -(-end // align) * align
  plan, names = [], set()
  for tname, dims, ttype, off in infos:  # every tensor is checked before any is built
    if _shape_nbytes(dims, 8) is None: raise StateFileError(f"{name}: tensor {tname!r} has dims {dims}, too large for any tensor")
    n = math.prod(dims)
    if ttype in _GGML_PLAIN: nbytes = n * _GGML_PLAIN[ttype].itemsize
    elif ttype in _GGML_QUANTS:
      blk, bb, _ = _GGML_QUANTS[ttype]
      if not dims or dims[0] % blk:
        raise StateFileError(f"{name}: tensor {tname!r} of {_GGML_NAMES[ttype]} has dims {dims}, whose first is not a multiple of {blk}")
      nbytes = n // blk * bb
    else:
      known = _GGML_NAMES.get(ttype)
      what = f"type {known} ({ttype}), which gguf_load does not dequantise" if known else f"unknown type {ttype}"
      raise StateFileError(f"{name}: tensor {tname!r} has {what}; supported: {[_GGML_NAMES[t] for t in (*_GGML_PLAIN, *_GGML_QUANTS)]}")
    if tname in names: raise StateFileError(f"{name}: tensor {tname!r} appears twice")
    names.add(tname)
    if off % align: raise StateFileError(f"{name}: tensor {tname!r} starts at offset {off}, not a multiple of the alignment {align}")
    _check_span(name, f"the data of tensor {tname!r}", start + off, nbytes, len(mem))
    plan.append((tname, tuple(reversed(dims)), ttype, start + off, nbytes))
  # tensors sharing bytes would each be a copy of them where the memory is read-only (one file, many times its size)
  spans = sorted((b, b + nbytes, tname) for tname, _, _, b, nbytes in plan if nbytes)
  for (_, e0, k0), (b1, _, k1) in zip(spans, spans[1:]):
    if b1 < e0: raise StateFileError(f"{name}: the data of tensors {k0!r} and {k1!r} overlap")
  tensors: dict[str, Tensor] = {}
  for tname, shape, ttype, b, nbytes in plan:
    if ttype in _GGML_PLAIN: tensors[tname] = Tensor.from_bytes(mem[b:b + nbytes], _GGML_PLAIN[ttype], shape)
    else:
      _, bb, dequant = _GGML_QUANTS[ttype]
      tensors[tname] = dequant(Tensor.from_bytes(mem[b:b + nbytes], dtypes.uint8, (nbytes // bb, bb))).reshape(shape)
  return meta, tensors
