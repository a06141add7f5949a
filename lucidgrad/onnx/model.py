"""The ONNX messages a model file holds (ModelProto, GraphProto, NodeProto, ...) as dataclasses, their field numbers
from onnx.proto, and the conversion of tensors (raw, typed, packed 4/2-bit, external) and attributes to NumPy / Python.
`load_model(path_or_bytes)` is the entry point; nothing here imports onnx or protobuf."""
from __future__ import annotations
from dataclasses import dataclass, field
import math, mmap, os
from pathlib import Path
from typing import Any
import numpy as np
from lucidgrad.onnx.proto import OnnxDecodeError, decode

def _arr(dt=np.int64): return field(default_factory=lambda: np.zeros(0, dt))
def _list(): return field(default_factory=list)

@dataclass
class StringStringEntry:
  key: str = ""
  value: str = ""
  FIELDS = {1: ("key", "string", False), 2: ("value", "string", False)}

@dataclass
class OperatorSetId:
  """An opset import: the operator set `domain` ("" is ai.onnx) at `version`."""
  domain: str = ""
  version: int = 0
  FIELDS = {1: ("domain", "string", False), 2: ("version", "int64", False)}

@dataclass
class Dim:
  """One dimension of a declared shape: a number, a symbolic name, or neither (unknown)."""
  dim_value: int | None = None
  dim_param: str | None = None
  denotation: str = ""
  FIELDS = {1: ("dim_value", "int64", False), 2: ("dim_param", "string", False), 3: ("denotation", "string", False)}

@dataclass
class TensorShape:
  dim: list[Dim] = _list()
  FIELDS = {1: ("dim", Dim, True)}

@dataclass
class TensorType:
  elem_type: int = 0
  shape: TensorShape | None = None  # None: rank unknown
  FIELDS = {1: ("elem_type", "int32", False), 2: ("shape", TensorShape, False)}

@dataclass
class SequenceType:
  elem_type: Type | None = None

@dataclass
class MapType:
  key_type: int = 0
  value_type: Type | None = None

@dataclass
class OptionalType:
  elem_type: Type | None = None

@dataclass
class OpaqueType:
  domain: str = ""
  name: str = ""
  FIELDS = {1: ("domain", "string", False), 2: ("name", "string", False)}

@dataclass
class Type:
  """TypeProto: exactly one of tensor_type, sequence_type, map_type, optional_type, sparse_tensor_type, opaque_type."""
  tensor_type: TensorType | None = None
  sequence_type: SequenceType | None = None
  map_type: MapType | None = None
  optional_type: OptionalType | None = None
  sparse_tensor_type: TensorType | None = None
  opaque_type: OpaqueType | None = None
  denotation: str = ""
  FIELDS = {1: ("tensor_type", TensorType, False), 4: ("sequence_type", SequenceType, False), 5: ("map_type", MapType, False),
            6: ("denotation", "string", False), 7: ("opaque_type", OpaqueType, False), 8: ("sparse_tensor_type", TensorType, False),
            9: ("optional_type", OptionalType, False)}
SequenceType.FIELDS = {1: ("elem_type", Type, False)}
MapType.FIELDS = {1: ("key_type", "int32", False), 2: ("value_type", Type, False)}
OptionalType.FIELDS = {1: ("elem_type", Type, False)}

@dataclass
class ValueInfo:
  """A graph input, output or intermediate: its name and declared type."""
  name: str = ""
  type: Type | None = None
  doc_string: str = ""
  metadata_props: list[StringStringEntry] = _list()
  FIELDS = {1: ("name", "string", False), 2: ("type", Type, False), 3: ("doc_string", "string", False), 4: ("metadata_props", StringStringEntry, True)}

@dataclass
class Segment:
  begin: int = 0
  end: int = 0
  FIELDS = {1: ("begin", "int64", False), 2: ("end", "int64", False)}

# ONNX elem type -> (name, NumPy dtype or None where NumPy/ml_dtypes has none, bits per element)
try: import ml_dtypes
except ImportError: ml_dtypes = None
def _ml(name: str): return getattr(ml_dtypes, name, None) if ml_dtypes is not None else None
ELEM_TYPES: dict[int, tuple[str, Any, int]] = {
  1: ("FLOAT", np.float32, 32), 2: ("UINT8", np.uint8, 8), 3: ("INT8", np.int8, 8), 4: ("UINT16", np.uint16, 16), 5: ("INT16", np.int16, 16),
  6: ("INT32", np.int32, 32), 7: ("INT64", np.int64, 64), 8: ("STRING", object, 0), 9: ("BOOL", np.bool_, 8), 10: ("FLOAT16", np.float16, 16),
  11: ("DOUBLE", np.float64, 64), 12: ("UINT32", np.uint32, 32), 13: ("UINT64", np.uint64, 64), 14: ("COMPLEX64", np.complex64, 64),
  15: ("COMPLEX128", np.complex128, 128), 16: ("BFLOAT16", _ml("bfloat16"), 16), 17: ("FLOAT8E4M3FN", _ml("float8_e4m3fn"), 8),
  18: ("FLOAT8E4M3FNUZ", _ml("float8_e4m3fnuz"), 8), 19: ("FLOAT8E5M2", _ml("float8_e5m2"), 8), 20: ("FLOAT8E5M2FNUZ", _ml("float8_e5m2fnuz"), 8),
  21: ("UINT4", _ml("uint4"), 4), 22: ("INT4", _ml("int4"), 4), 23: ("FLOAT4E2M1", _ml("float4_e2m1fn"), 4), 24: ("FLOAT8E8M0", _ml("float8_e8m0fnu"), 8),
  25: ("UINT2", _ml("uint2"), 2), 26: ("INT2", _ml("int2"), 2), 27: ("FLOAT6E2M3", _ml("float6_e2m3fn"), 6), 28: ("FLOAT6E3M2", _ml("float6_e3m2fn"), 6)}
_SIGNED_SUBBYTE = {22, 26}

def elem_type_name(t: int) -> str: return ELEM_TYPES[t][0] if t in ELEM_TYPES else f"elem type {t}"

def _elem_dtype(t: int, what: str):
  if t not in ELEM_TYPES: raise OnnxDecodeError(f"{what}: unknown data_type {t}")
  name, npdt, _ = ELEM_TYPES[t]
  if npdt is None: raise NotImplementedError(f"{what}: ONNX {name} tensors need the ml_dtypes package (not installed, or too old for {name})")
  return np.dtype(npdt)

def _unpack_bits(packed: np.ndarray, bits: int, n: int, signed: bool) -> np.ndarray:
  """n elements of `bits` (2/4/6) bits each, LSB first, from the bytes `packed`, as uint8 (int8 sign-extended if signed)."""
  bitstream = np.unpackbits(packed.astype(np.uint8), bitorder="little")[:n * bits].reshape(n, bits)
  vals = (bitstream.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(axis=1).astype(np.uint8)
  if signed: vals = ((vals.astype(np.int16) ^ (1 << (bits - 1))) - (1 << (bits - 1))).astype(np.int8)
  return vals

def _text(b) -> str | bytes:
  """UTF-8 text as str; bytes where it is not valid UTF-8 (ONNX strings are bytes on the wire)."""
  try: return bytes(b).decode("utf-8")
  except UnicodeDecodeError: return bytes(b)

def _subbyte(vals: np.ndarray, t: int, dt: np.dtype, shape) -> np.ndarray:
  """Unpacked 2/4/6-bit elements as dt: integer types by value, float types by bit pattern."""
  return (vals.astype(dt) if t in (21, 22, 25, 26) else vals.astype(np.uint8).view(dt)).reshape(shape)

@dataclass
class TensorData:
  """TensorProto: a constant tensor (an initializer, a Constant's value, a tensor attribute, a test input)."""
  dims: np.ndarray = _arr()
  data_type: int = 0
  segment: Segment | None = None
  float_data: np.ndarray = _arr(np.float32)
  int32_data: np.ndarray = _arr()
  string_data: list = _list()
  int64_data: np.ndarray = _arr()
  name: str = ""
  doc_string: str = ""
  raw_data: Any = None
  external_data: list[StringStringEntry] = _list()
  data_location: int = 0
  double_data: np.ndarray = _arr(np.float64)
  uint64_data: np.ndarray = _arr(np.uint64)
  metadata_props: list[StringStringEntry] = _list()
  FIELDS = {1: ("dims", "int64", True), 2: ("data_type", "int32", False), 3: ("segment", Segment, False), 4: ("float_data", "float", True),
            5: ("int32_data", "int32", True), 6: ("string_data", "bytes", True), 7: ("int64_data", "int64", True), 8: ("name", "string", False),
            9: ("raw_data", "bytes", False), 10: ("double_data", "double", True), 11: ("uint64_data", "uint64", True), 12: ("doc_string", "string", False),
            13: ("external_data", StringStringEntry, True), 14: ("data_location", "enum", False), 16: ("metadata_props", StringStringEntry, True)}

  @property
  def shape(self) -> tuple[int, ...]: return tuple(int(d) for d in self.dims)

  def to_numpy(self, base_dir: str | Path | None = None) -> np.ndarray:
    """The tensor's value as a NumPy array of its ONNX type (ml_dtypes for bfloat16/float8/int4; object array of
    for strings). External data is read only from files inside base_dir (the model's directory)."""
    what = f"tensor {self.name!r}"
    shape = self.shape
    if any(d < 0 for d in shape): raise OnnxDecodeError(f"{what}: negative dims {shape}")
    n = math.prod(shape)
    if self.data_type == 8:
      if len(self.string_data) != n: raise OnnxDecodeError(f"{what}: {len(self.string_data)} strings for shape {shape}")
      out = np.empty(n, dtype=object)
      out[:] = [_text(s) for s in self.string_data]
      return out.reshape(shape)
    dt = _elem_dtype(self.data_type, what)
    bits = ELEM_TYPES[self.data_type][2]
    raw = None
    if self.data_location == 1 or self.external_data: raw = self._external(base_dir, what)
    elif self.raw_data is not None: raw = self.raw_data
    if raw is not None:
      need = (n * bits + 7) // 8
      if len(raw) != need: raise OnnxDecodeError(f"{what}: raw data of {len(raw)} bytes for {elem_type_name(self.data_type)} shape {shape} ({need} bytes)")
      if bits < 8: return _subbyte(_unpack_bits(np.frombuffer(raw, np.uint8), bits, n, self.data_type in _SIGNED_SUBBYTE), self.data_type, dt, shape)
      return np.frombuffer(raw, dtype=dt.newbyteorder("<") if dt.kind in "iufc" else dt, count=n).astype(dt, copy=False).reshape(shape)
    t = self.data_type
    if t in (1, 14): src, per = self.float_data, 2 if t == 14 else 1
    elif t in (11, 15): src, per = self.double_data, 2 if t == 15 else 1
    elif t == 7: src, per = self.int64_data, 1
    elif t in (12, 13): src, per = self.uint64_data, 1
    else: src, per = self.int32_data, 1
    if bits in (2, 4):  # 8/bits elements packed in each int32 entry
      per_entry = 8 // bits
      if len(src) != (n + per_entry - 1) // per_entry: raise OnnxDecodeError(f"{what}: {len(src)} int32_data entries for {n} packed {elem_type_name(t)} values")
      return _subbyte(_unpack_bits(src.astype(np.uint8), bits, n, t in _SIGNED_SUBBYTE), t, dt, shape)
    if len(src) != n * per: raise OnnxDecodeError(f"{what}: {len(src)} typed values for {elem_type_name(t)} shape {shape} ({n * per})")
    if t in (14, 15): return (src[0::2] + 1j * src[1::2]).astype(dt).reshape(shape)
    if t in (10, 16) or 17 <= t <= 28: return src.astype(np.uint16 if dt.itemsize == 2 else np.uint8).view(dt).reshape(shape)  # bit patterns
    if t == 9: return (src != 0).reshape(shape)
    return src.astype(dt).reshape(shape)

  def _external(self, base_dir, what: str) -> memoryview:
    info = {e.key: e.value for e in self.external_data}
    if "location" not in info: raise OnnxDecodeError(f"{what}: external data without a location")
    if base_dir is None: raise ValueError(f"{what}: its data is in the external file {info['location']!r}, but the model was not read from a file: "
                                          "pass the model's path (its directory holds the data)")
    path = external_path(base_dir, info["location"], what)
    try: offset, length = int(info.get("offset", 0)), int(info["length"]) if "length" in info else None
    except ValueError: raise OnnxDecodeError(f"{what}: external data offset/length {info.get('offset')!r}/{info.get('length')!r} are not integers") from None
    size = path.stat().st_size
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
      raise OnnxDecodeError(f"{what}: external data at offset {offset}, length {length} is outside {info['location']!r} ({size} bytes)")
    length = size - offset if length is None else length
    if not length: return memoryview(b"")
    with open(path, "rb") as f: mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mm)[offset:offset + length]

def external_path(base_dir, location: str, what: str = "external data") -> Path:
  """The file `location` names, refused (ValueError) unless it is a relative path that stays inside base_dir after
  resolving `..` and symlinks."""
  base = Path(base_dir).resolve()
  if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
    raise ValueError(f"{what}: external data location {location!r} is an absolute path; only paths inside the model's directory are read")
  if ".." in Path(location).parts or ".." in location.replace("\\", "/").split("/"):
    raise ValueError(f"{what}: external data location {location!r} climbs out with '..'; only paths inside the model's directory are read")
  path = (base / location).resolve()
  if not path.is_relative_to(base): raise ValueError(f"{what}: external data location {location!r} leads outside the model's directory {str(base)!r} (a symlink)")
  if not path.is_file(): raise FileNotFoundError(f"{what}: external data file {location!r} not found in {str(base)!r}")
  return path

@dataclass
class SparseTensorData:
  """SparseTensorProto: values at indices ([NNZ] linearised or [NNZ, rank]) of a dense tensor of shape dims."""
  values: TensorData | None = None
  indices: TensorData | None = None
  dims: np.ndarray = _arr()
  FIELDS = {1: ("values", TensorData, False), 2: ("indices", TensorData, False), 3: ("dims", "int64", True)}

  def to_numpy(self, base_dir=None) -> np.ndarray:
    """The dense array (zeros where no value is given)."""
    shape, what = tuple(int(d) for d in self.dims), "sparse tensor"
    if self.values is None or self.indices is None: raise OnnxDecodeError(f"{what}: values or indices missing")
    vals, idx = self.values.to_numpy(base_dir), self.indices.to_numpy(base_dir).astype(np.int64)
    if any(d < 0 for d in shape): raise OnnxDecodeError(f"{what}: negative dims {shape}")
    dense = np.zeros(math.prod(shape), vals.dtype)
    flat = idx if idx.ndim == 1 else (np.ravel_multi_index(tuple(idx.T), shape) if idx.size and idx.shape[1] == len(shape) else None)
    if flat is None or len(flat) != len(vals.reshape(-1)) or (flat.size and (flat.min() < 0 or flat.max() >= dense.size)):
      raise OnnxDecodeError(f"{what}: indices of shape {idx.shape} do not fit {len(vals.reshape(-1))} values in shape {shape}")
    dense[flat] = vals.reshape(-1)
    return dense.reshape(shape)

# AttributeProto.type values
UNDEFINED, FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS, TENSORS, GRAPHS, SPARSE_TENSOR, SPARSE_TENSORS, TYPE_PROTO, TYPE_PROTOS = \
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14

@dataclass
class Attribute:
  """AttributeProto: a named constant of one of the types above (or, in a function body, a reference to the caller's)."""
  name: str = ""
  ref_attr_name: str = ""
  doc_string: str = ""
  type: int = 0
  f: float = 0.0
  i: int = 0
  s: Any = b""
  t: TensorData | None = None
  g: Graph | None = None
  sparse_tensor: SparseTensorData | None = None
  tp: Type | None = None
  floats: np.ndarray = _arr(np.float32)
  ints: np.ndarray = _arr()
  strings: list = _list()
  tensors: list[TensorData] = _list()
  graphs: list[Graph] = _list()
  sparse_tensors: list[SparseTensorData] = _list()
  type_protos: list[Type] = _list()

  def value(self, base_dir=None) -> Any:
    """The attribute as plain Python (ONNXAPI.md): int, float, str (bytes where not UTF-8), lists of those, NumPy arrays
    for tensors, Graph objects for graphs, Type for type protos."""
    t = self.type
    if t == FLOAT: return float(self.f)
    if t == INT: return int(self.i)
    if t == STRING: return _text(self.s)
    if t == TENSOR: return self.t.to_numpy(base_dir) if self.t is not None else None
    if t == GRAPH: return self.g
    if t == SPARSE_TENSOR: return self.sparse_tensor.to_numpy(base_dir) if self.sparse_tensor is not None else None
    if t == TYPE_PROTO: return self.tp
    if t == FLOATS: return [float(v) for v in self.floats]
    if t == INTS: return [int(v) for v in self.ints]
    if t == STRINGS: return [_text(v) for v in self.strings]
    if t == TENSORS: return [x.to_numpy(base_dir) for x in self.tensors]
    if t == GRAPHS: return list(self.graphs)
    if t == SPARSE_TENSORS: return [x.to_numpy(base_dir) for x in self.sparse_tensors]
    if t == TYPE_PROTOS: return list(self.type_protos)
    # very old files leave `type` unset: the one field that is set says it
    for name, conv in (("t", TENSOR), ("g", GRAPH), ("tp", TYPE_PROTO)):
      if getattr(self, name) is not None: self.type = conv; return self.value(base_dir)
    for name, conv in (("floats", FLOATS), ("ints", INTS), ("strings", STRINGS), ("tensors", TENSORS), ("graphs", GRAPHS)):
      if len(getattr(self, name)): self.type = conv; return self.value(base_dir)
    raise OnnxDecodeError(f"attribute {self.name!r}: unknown or unset type {t}")

@dataclass
class Node:
  """NodeProto: one operator call; empty input names are omitted optional inputs."""
  input: list[str] = _list()
  output: list[str] = _list()
  name: str = ""
  op_type: str = ""
  domain: str = ""
  overload: str = ""
  attribute: list[Attribute] = _list()
  doc_string: str = ""
  metadata_props: list[StringStringEntry] = _list()
  FIELDS = {1: ("input", "string", True), 2: ("output", "string", True), 3: ("name", "string", False), 4: ("op_type", "string", False),
            5: ("attribute", Attribute, True), 6: ("doc_string", "string", False), 7: ("domain", "string", False), 8: ("overload", "string", False),
            9: ("metadata_props", StringStringEntry, True)}

@dataclass
class Graph:
  """GraphProto: nodes in topological order, initializers, declared inputs/outputs/intermediates. `base_dir` (set by
  load_model, not a proto field) is where its external data lives."""
  node: list[Node] = _list()
  name: str = ""
  initializer: list[TensorData] = _list()
  sparse_initializer: list[SparseTensorData] = _list()
  doc_string: str = ""
  input: list[ValueInfo] = _list()
  output: list[ValueInfo] = _list()
  value_info: list[ValueInfo] = _list()
  metadata_props: list[StringStringEntry] = _list()
  base_dir: str | None = None
  FIELDS = {1: ("node", Node, True), 2: ("name", "string", False), 5: ("initializer", TensorData, True), 10: ("doc_string", "string", False),
            11: ("input", ValueInfo, True), 12: ("output", ValueInfo, True), 13: ("value_info", ValueInfo, True),
            15: ("sparse_initializer", SparseTensorData, True), 16: ("metadata_props", StringStringEntry, True)}

Attribute.FIELDS = {1: ("name", "string", False), 2: ("f", "float", False), 3: ("i", "int64", False), 4: ("s", "bytes", False), 5: ("t", TensorData, False),
                    6: ("g", Graph, False), 7: ("floats", "float", True), 8: ("ints", "int64", True), 9: ("strings", "bytes", True),
                    10: ("tensors", TensorData, True), 11: ("graphs", Graph, True), 13: ("doc_string", "string", False), 14: ("tp", Type, False),
                    15: ("type_protos", Type, True), 20: ("type", "enum", False), 21: ("ref_attr_name", "string", False),
                    22: ("sparse_tensor", SparseTensorData, False), 23: ("sparse_tensors", SparseTensorData, True)}

@dataclass
class Function:
  """FunctionProto: a model-local function, called by nodes whose (domain, op_type) is (domain, name); expanded inline."""
  name: str = ""
  input: list[str] = _list()
  output: list[str] = _list()
  attribute: list[str] = _list()
  attribute_proto: list[Attribute] = _list()  # attributes with defaults
  node: list[Node] = _list()
  doc_string: str = ""
  opset_import: list[OperatorSetId] = _list()
  domain: str = ""
  overload: str = ""
  value_info: list[ValueInfo] = _list()
  metadata_props: list[StringStringEntry] = _list()
  FIELDS = {1: ("name", "string", False), 4: ("input", "string", True), 5: ("output", "string", True), 6: ("attribute", "string", True),
            7: ("node", Node, True), 8: ("doc_string", "string", False), 9: ("opset_import", OperatorSetId, True), 10: ("domain", "string", False),
            11: ("attribute_proto", Attribute, True), 12: ("value_info", ValueInfo, True), 13: ("overload", "string", False),
            14: ("metadata_props", StringStringEntry, True)}

@dataclass
class Model:
  """ModelProto: the graph, the opsets it imports, model-local functions and metadata."""
  ir_version: int = 0
  opset_import: list[OperatorSetId] = _list()
  producer_name: str = ""
  producer_version: str = ""
  domain: str = ""
  model_version: int = 0
  doc_string: str = ""
  graph: Graph | None = None
  metadata_props: list[StringStringEntry] = _list()
  functions: list[Function] = _list()
  FIELDS = {1: ("ir_version", "int64", False), 2: ("producer_name", "string", False), 3: ("producer_version", "string", False),
            4: ("domain", "string", False), 5: ("model_version", "int64", False), 6: ("doc_string", "string", False), 7: ("graph", Graph, False),
            8: ("opset_import", OperatorSetId, True), 14: ("metadata_props", StringStringEntry, True), 25: ("functions", Function, True)}

  def opsets(self) -> dict[str, int]:
    """Domain -> imported opset version ("ai.onnx" folded into "")."""
    return {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in self.opset_import}

def _set_base_dir(g: Graph, base_dir: str | None):
  """Subgraphs (in attributes, at any depth) read external data from the same directory as the main graph."""
  stack = [g]
  while stack:
    g = stack.pop()
    g.base_dir = base_dir
    for n in g.node:
      for a in n.attribute: stack.extend(([a.g] if a.g is not None else []) + list(a.graphs))

def load_model(src) -> Model:
  """A Model decoded from a path (str / Path), bytes, bytearray or memoryview. A file is memory-mapped, so large
  initializers are not copied until used; external data is looked up beside the file."""
  base_dir = None
  if isinstance(src, (str, os.PathLike)):
    path = Path(src)
    base_dir = str(path.resolve().parent)
    with open(path, "rb") as f:
      size = os.fstat(f.fileno()).st_size
      buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size else memoryview(b"")
  elif isinstance(src, (bytes, bytearray, memoryview)): buf = memoryview(src).cast("B")
  else: raise TypeError(f"load_model: expected a path or bytes, got {type(src).__name__}")
  model = decode(Model, buf)
  if model.graph is None: raise OnnxDecodeError("Model: no graph (is this an ONNX model file?)")
  _set_base_dir(model.graph, base_dir)
  for fn in model.functions:
    for n in fn.node:
      for a in n.attribute:
        for g in ([a.g] if a.g is not None else []) + list(a.graphs): _set_base_dir(g, base_dir)
  return model

def load_tensor(src) -> np.ndarray:
  """A serialised TensorProto (the backend test data's input_0.pb ...) from a path or bytes, as a NumPy array."""
  if isinstance(src, (str, os.PathLike)):
    with open(src, "rb") as f: src = f.read()
  return decode(TensorData, memoryview(src).cast("B")).to_numpy()
