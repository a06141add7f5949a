"""Pickles that try to run code, import a module or change an object, each written by hand from opcodes and put in a
torch .pth zip, a legacy .pth and a CIFAR-10 batch: every load raises UnsafePickleError (a StateFileError; for cifar10(),
which reports every place it tried, a StateFileError naming the refusal), the attack leaves no trace (no marker file, no
new module in sys.modules, no changed function or dtype), and the globals each unpickler resolves are exactly its table."""
import collections, io, pickle, struct, sys, zipfile
import numpy as np
import pytest
from lucidgrad.nn import datasets, state
from lucidgrad.nn.state import StateFileError, UnsafePickleError, torch_load
from lucidgrad.nn.datasets import cifar10, load_numpy_pickle
from lucidgrad.testing.loader_fuzz import py2_pickle

# ---- writing pickles by opcode ----
def glob(module: str, name: str) -> bytes: return b"c" + module.encode() + b"\n" + name.encode() + b"\n"   # GLOBAL
def stack_glob(module: str, name: str) -> bytes:   # SHORT_BINUNICODE x2, STACK_GLOBAL (protocol 4)
  return b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93"
def s(x: str) -> bytes: return b"X" + struct.pack("<I", len(x.encode())) + x.encode()   # BINUNICODE
def i(x: int) -> bytes: return b"J" + struct.pack("<i", x)   # BININT
def call(fn: bytes, *args: bytes) -> bytes: return fn + b"(" + b"".join(args) + b"tR"   # fn(*args): MARK ... TUPLE REDUCE
def lst(*xs: bytes) -> bytes: return b"](" + b"".join(xs) + b"e"
def tup(*xs: bytes) -> bytes: return b"(" + b"".join(xs) + b"t"
def build(obj: bytes, state: bytes) -> bytes: return obj + state + b"b"

def gadgets(marker) -> dict[str, bytes]:
  """name -> a pickle body (an object expression); each would create `marker` (or change the process) if it ran."""
  touch, code = f"touch {marker}", f"open({str(marker)!r}, 'w').close()"
  return {
    "os.system": call(glob("os", "system"), s(touch)),
    "posix.system": call(glob("posix", "system"), s(touch)),
    "os.system by STACK_GLOBAL": call(stack_glob("os", "system"), s(touch)),
    "subprocess.Popen": call(glob("subprocess", "Popen"), lst(s("touch"), s(str(marker)))),
    "builtins.eval": call(glob("builtins", "eval"), s(code)),
    "__builtin__.eval (Python 2's name)": call(glob("__builtin__", "eval"), s(code)),
    "builtins.exec": call(glob("builtins", "exec"), s(code)),
    "builtins.compile": call(glob("builtins", "compile"), s(code), s("x"), s("exec")),
    "builtins.getattr(__import__('os'), 'system')":
      call(call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), s("os")), s("system")), s(touch)),
    "builtins.__import__": call(glob("builtins", "__import__"), s("colorsys")),
    "builtins.open": call(glob("builtins", "open"), s(str(marker)), s("w")),
    "numpy runstring": call(glob("numpy.testing._private.utils", "runstring"), s(code), b"}"),
    "copyreg._reconstructor": call(glob("copyreg", "_reconstructor"), glob("os", "system"), glob("builtins", "object"), b"N"),
    "numpy _reconstruct of 2**30 elements": call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), tup(i(2**30)), s("b")),
    "numpy.ndarray called by REDUCE": call(glob("numpy", "ndarray"), tup(i(2**30))),
    "torch.load": call(glob("torch", "load"), s(str(marker))),
    "bytes(2**30)": call(glob("builtins", "bytes"), i(2**30)),
    "REDUCE on a returned object": call(call(glob("collections", "OrderedDict")), s("x")),
    "BUILD setting a function's __defaults__":
      build(glob("torch._utils", "_rebuild_parameter"), tup(b"N", b"}" + s("__defaults__") + tup(i(1), i(2), i(3)) + b"s")),
    "BUILD on numpy's _reconstruct": build(glob("numpy.core.multiarray", "_reconstruct"), tup(b"N", b"}" + s("__kwdefaults__") + b"}" + b"s")),
    "BUILD setting __class__ of an OrderedDict":
      build(call(glob("collections", "OrderedDict")), tup(b"N", b"}" + s("__class__") + glob("builtins", "dict") + b"s")),
    "INST os.system": b"(" + s(touch) + b"ios\nsystem\n",
    "OBJ os.system": b"(" + glob("os", "system") + s(touch) + b"o",
    "NEWOBJ of an allowed class": glob("collections", "OrderedDict") + b")\x81",
    "EXT1 (copyreg's extension registry)": b"\x82\x01",
    "persistent id ('module', 'os')": tup(s("module"), s("os")) + b"Q",
    "text persistent id": b"Pos.system\n",
  }

def pth_zip(pkl: bytes) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z: z.writestr("archive/data.pkl", pkl); z.writestr("archive/byteorder", b"little")
  return buf.getvalue()

def pth_legacy(pkl: bytes) -> bytes:
  head = pickle.dumps(0x1950a86a20f9469cfc6c, 2) + pickle.dumps(1001, 2) + pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2)
  return head + pkl + pickle.dumps([], 2)

@pytest.fixture
def cifar_dir(tmp_path):
  """A CIFAR-10 directory of five small valid batches; a test writes its own test_batch."""
  d = tmp_path / "cifar"
  d.mkdir()
  rng = np.random.default_rng(0)
  for b in datasets._CIFAR_BATCHES: (d / b).write_bytes(py2_pickle({b"data": rng.integers(0, 256, (1, 3072), dtype=np.uint8), b"labels": [1]}))
  cifar10(d)  # loads: every module the loaders use is imported before sys.modules is compared
  torch_load(pth_zip(pickle.dumps({"a": 1}, 2)))
  return d

def untouched():
  """What an attack could change in this process: the modules imported, our stand-ins' defaults, NumPy's float32."""
  return (set(sys.modules), state._rebuild_parameter.__defaults__, state._rebuild_tensor_v2.__defaults__, np.dtype("f4").byteorder,
          np.dtype("u1").isnative, collections.OrderedDict.__dict__.get("x"))

LOADERS = {"pth zip": lambda pkl, d: torch_load(pth_zip(pkl)), "pth legacy": lambda pkl, d: torch_load(pth_legacy(pkl)),
           "numpy pickle": lambda pkl, d: load_numpy_pickle(pkl), "cifar batch": lambda pkl, d: ((d / "test_batch").write_bytes(pkl), cifar10(d))}

@pytest.mark.parametrize("where", list(LOADERS))
@pytest.mark.parametrize("gadget", list(gadgets("m")))
def test_a_pickle_that_would_run_code_is_refused_and_leaves_no_trace(gadget, where, cifar_dir, tmp_path):
  marker = tmp_path / "pwned"
  pkl = b"\x80\x02}" + s("w") + gadgets(marker)[gadget] + b"s."   # {"w": <the gadget>}
  before = untouched()
  with pytest.raises(StateFileError) as e: LOADERS[where](pkl, cifar_dir)
  assert untouched() == before
  assert not marker.exists()
  if where == "cifar batch": assert "refusing to load" in str(e.value) and "test_batch" in str(e.value)
  else: assert isinstance(e.value, UnsafePickleError), f"{type(e.value).__name__}: {e.value}"

def test_the_refusal_names_the_file_and_what_was_asked_for(tmp_path):
  p = tmp_path / "evil.pth"
  p.write_bytes(pth_zip(b"\x80\x02" + gadgets(tmp_path / "m")["os.system"] + b"."))
  with pytest.raises(UnsafePickleError, match=r"evil\.pth: refusing to load the global os\.system"): torch_load(p)
  with pytest.raises(UnsafePickleError, match=r"batch: refusing to load the opcode INST"): load_numpy_pickle(b"\x80\x02(ios\nsystem\n.", "batch")

def test_a_dtype_state_is_only_a_byte_order_and_numpy_singletons_stay_as_they_are():
  # the pickle asks for dtype('f4', align=False, copy=False): NumPy would hand out its float32 singleton and BUILD would
  # change it for the whole process; here the state is checked and applied to a new dtype
  f4 = glob("numpy", "dtype") + tup(s("f4"), b"\x89", b"\x89") + b"R"
  big = build(f4, tup(i(3), s(">"), b"NNN", i(-1), i(-1), i(0)))
  assert load_numpy_pickle(b"\x80\x02" + big + b".") == np.dtype(">f4") and np.dtype("f4").byteorder == "="
  fields = build(f4, tup(i(3), s("<"), b"N", tup(s("a")), b"}", i(-1), i(-1), i(0)))
  with pytest.raises(StateFileError, match="not that of a plain numeric dtype"): load_numpy_pickle(b"\x80\x02" + fields + b".")
  objects = glob("numpy", "dtype") + tup(s("O8"), b"\x89", b"\x88") + b"R"
  with pytest.raises(StateFileError, match="not a plain numeric dtype"): load_numpy_pickle(b"\x80\x02" + objects + b".")
  assert np.dtype("f4").byteorder == "=" and np.dtype("f4").names is None

def test_arrays_of_every_protocol_still_load():
  a = np.arange(12, dtype=np.float32).reshape(3, 4)
  for proto in range(2, 6):
    for x in (a, np.asfortranarray(a), a.astype(">i2"), np.zeros((0, 3), np.uint8), np.array(2.5)):
      got = load_numpy_pickle(pickle.dumps({"x": x, "t": (x, [x])}, protocol=proto))
      np.testing.assert_array_equal(got["x"], x)
      assert got["x"].dtype == x.dtype and got["x"].flags.writeable and got["t"][1][0] is got["x"]

def test_state_dicts_torch_writes_need_only_the_table(tmp_path):
  torch = pytest.importorskip("torch")
  sd = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict()
  sd["p"], sd["bf"], sd["dev"] = torch.nn.Parameter(torch.ones(2)), torch.ones(2, dtype=torch.bfloat16), torch.device("cpu")
  for new in (True, False):
    torch.save(sd, p := tmp_path / f"m{new}.pth", _use_new_zipfile_serialization=new)
    out = torch_load(p)
    assert set(out) == set(sd) and out["dev"] == "cpu"
    np.testing.assert_array_equal(out["0.weight"].numpy(), sd["0.weight"].numpy())

def test_the_allowlists_are_exactly_these_globals():
  # a change to what a pickle may name is a change to what it may do: it shows up here
  torch_names = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
                 ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
                 ("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage")}
  torch_names |= {("torch", f"{t}Storage") for t in ("Float", "Half", "BFloat16", "Double", "Long", "Int", "Short", "Char", "Byte", "Bool")}
  torch_names |= {("torch", t) for t in ("bool", "uint8", "int8", "int16", "short", "int32", "int", "int64", "long", "uint16", "uint32", "uint64",
                                         "float16", "half", "bfloat16", "float32", "float", "float64", "double")}
  assert set(state._TORCH_GLOBALS) == torch_names
  assert set(datasets.NumpyUnpickler.globals_table) == {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                                                        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                                                        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                                                        ("__builtin__", "bytes"), ("builtins", "bytes")}
  # every value is a stand-in of ours or a builtin container: nothing that reaches a module, eval or a file
  for v in [*state._TORCH_GLOBALS.values(), *datasets.NumpyUnpickler.globals_table.values()]:
    assert v in (collections.OrderedDict, tuple) or getattr(type(v), "__module__", "").startswith("lucidgrad") or \
           getattr(v, "__module__", "").startswith("lucidgrad"), v
