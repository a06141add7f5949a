"""Run an ONNX model as one lazy lucidgrad graph: each node's function comes from the operator registry (chosen by the
model's opset for its domain), model-local functions are expanded inline, subgraphs (If/Loop/Scan) run through
ctx.run_graph with the enclosing scope visible. Nothing is realized between nodes unless an op asks for a host value."""
from __future__ import annotations
from collections import ChainMap
from typing import Any
import numpy as np
from lucidgrad.tensor import Tensor
from lucidgrad.dtype import DType, dtypes
from lucidgrad.onnx.model import ELEM_TYPES, Attribute, Function, Graph, Model, Node, Type, ValueInfo, elem_type_name, load_model
from lucidgrad.onnx.ops import lookup
import lucidgrad.onnx.control  # noqa: F401  (registers If, Loop, Scan, sequence and optional ops)

class _NoneOptional:
  """The value of an empty optional (ONNX `optional` type with no element)."""
  __slots__ = ()
  def __repr__(self): return "NONE_OPTIONAL"
  def __bool__(self): return False
NONE_OPTIONAL = _NoneOptional()

# ONNX elem type -> lucidgrad dtype, for the types lucidgrad has; others (strings, complex, float8, int4 ...) stay NumPy arrays
ONNX_TO_DTYPE: dict[int, DType] = {1: dtypes.float32, 2: dtypes.uint8, 3: dtypes.int8, 4: dtypes.uint16, 5: dtypes.int16, 6: dtypes.int32,
                                   7: dtypes.int64, 9: dtypes.bool, 10: dtypes.float16, 11: dtypes.float64, 12: dtypes.uint32,
                                   13: dtypes.uint64, 16: dtypes.bfloat16}
DTYPE_TO_ONNX = {v: k for k, v in ONNX_TO_DTYPE.items()}
_NP_TO_ONNX = {np.dtype(npdt): k for k, (_, npdt, _) in ELEM_TYPES.items() if npdt is not None}

def to_tensor(arr, device: str | None = None):
  """A NumPy value as the runner holds it: a Tensor where lucidgrad has the dtype, else the NumPy array itself."""
  arr = np.asarray(arr)
  if arr.dtype.name == "bfloat16": return Tensor(arr.astype(np.float32), device=device, dtype=dtypes.bfloat16)  # exact: bf16 is f32's top half
  if arr.dtype == object or arr.dtype.kind in "USVc" or arr.dtype.name not in _NP_NAMES: return arr
  return Tensor(arr, device=device)
_NP_NAMES = {np.dtype(d.np).name for d in ONNX_TO_DTYPE.values() if d != dtypes.bfloat16}

try: from ml_dtypes import bfloat16 as _BF16
except ImportError: _BF16 = None

def to_numpy(v) -> Any:
  """A runner value as plain NumPy: Tensors to arrays (bfloat16 as ml_dtypes.bfloat16 where installed), sequences to
  lists, an empty optional to None."""
  if isinstance(v, Tensor):
    arr = v.numpy()
    return arr.astype(_BF16) if v.dtype == dtypes.bfloat16 and _BF16 is not None and arr.dtype != _BF16 else arr
  if isinstance(v, list): return [to_numpy(x) for x in v]
  if v is NONE_OPTIONAL: return None
  return v

class _Missing:
  """An output a node names but its op did not produce: an error only if something reads it."""
  __slots__ = ("what",)
  def __init__(self, what: str): self.what = what

class Context:
  """What an op function sees besides its inputs and attributes (ONNXAPI.md)."""
  NONE_OPTIONAL = NONE_OPTIONAL
  __slots__ = ("runner", "opset", "device", "scope", "opsets", "node")
  def __init__(self, runner: OnnxRunner, opset: int, scope: ChainMap, opsets: dict[str, int], node: Node):
    self.runner, self.opset, self.device, self.scope, self.opsets, self.node = runner, opset, runner.device, scope, opsets, node
  @property
  def num_outputs(self) -> int:
    """How many outputs the node names (Split without sizes divides its input into that many)."""
    return len(self.node.output)
  def const(self, x) -> np.ndarray:
    """x's value on the host. Initializers and Constant outputs are known already; anything else is realized here."""
    return self.runner._host_value(x)
  def is_constant(self, x) -> bool:
    """Whether x is a value of the model itself (an initializer or a Constant's output): the same Tensor every call."""
    return isinstance(x, Tensor) and (hit := self.runner._host.get(id(x))) is not None and hit[0] is x
  def packed(self, x: Tensor, key, make) -> Tensor:
    """make(x) for a constant x of the model (is_constant), realized at this node's first call and kept per key: a
    weight in the layout its op reads it in, packed once as a runtime packs at load."""
    if not self.is_constant(x):
      what = f"a {x.dtype.name} tensor of shape {x.shape}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
      raise ValueError(f"ctx.packed: {what} is not a constant of the model (an initializer or a Constant's output)")
    k = (id(self.node), key)
    if (hit := self.runner._packed.get(k)) is None or hit[0] is not x: self.runner._packed[k] = hit = (x, make(x).realize())
    return hit[1]
  def run_graph(self, graph: Graph, inputs: list) -> list:
    """Run a subgraph with `inputs` bound to its declared inputs in order; names it does not define come from the
    scope of the node that runs it."""
    return self.runner._run_graph(graph, inputs, self.scope, self.opsets)

class OnnxRunner:
  """A loaded ONNX model, ready to run: `OnnxRunner(path_or_bytes)(inputs) -> {output name: Tensor}`."""
  def __init__(self, path_or_bytes, device: str | None = None):
    self.model: Model = path_or_bytes if isinstance(path_or_bytes, Model) else load_model(path_or_bytes)
    self.device = device
    self.graph: Graph = self.model.graph
    self.opsets = self.model.opsets()
    self.functions: dict[tuple[str, str], Function] = {(_domain(f.domain), f.name): f for f in self.model.functions}
    self._inits: dict[int, dict[str, Any]] = {}     # id(graph) -> its initializers as runner values
    self._host: dict[int, tuple[Any, np.ndarray]] = {}  # id(value) -> (value, its host array) for known constants
    self._const_nodes: dict[int, list] = {}          # id(Constant node) -> its outputs, made once
    self._frame_host: dict[int, tuple[Any, np.ndarray]] = {}  # host values read during one call
    self._packed: dict[tuple, tuple[Tensor, Tensor]] = {}      # (id(node), key) -> (constant, its packed form)
    init_names = {t.name for t in self.graph.initializer} | {t.values.name for t in self.graph.sparse_initializer if t.values is not None}
    self.inputs: list[ValueInfo] = [v for v in self.graph.input if v.name not in init_names]  # what a caller must (or may) give
    self.outputs: list[str] = [v.name for v in self.graph.output]

  def __call__(self, inputs: dict) -> dict:
    """Run the model on {input name: NumPy array / Tensor / list (sequence) / None (empty optional)}; returns
    {output name: Tensor (or list of Tensors for a sequence, NONE_OPTIONAL for an empty optional)}, lazy."""
    if not isinstance(inputs, dict): raise TypeError(f"OnnxRunner: inputs must be a dict of name -> value, got {type(inputs).__name__}")
    known = {v.name for v in self.graph.input}
    if (unknown := sorted(set(inputs) - known)): raise ValueError(f"OnnxRunner: unknown input(s) {unknown}; the model's inputs are {[v.name for v in self.inputs]}")
    feed = {}
    for vi in self.graph.input:
      if vi.name in inputs: feed[vi.name] = self._check_input(vi, inputs[vi.name])
      elif vi in self.inputs:
        if vi.type is not None and vi.type.optional_type is not None: feed[vi.name] = NONE_OPTIONAL
        else: raise ValueError(f"OnnxRunner: missing input {vi.name!r} ({_type_str(vi.type)}); the model's inputs are {[v.name for v in self.inputs]}")
    try: outs = self._run_graph(self.graph, [], ChainMap(feed), self.opsets, top=True)
    finally: self._frame_host.clear()
    return dict(zip(self.outputs, outs))

  # ---- inputs ----
  def _check_input(self, vi: ValueInfo, x) -> Any:
    t = vi.type
    if x is None or x is NONE_OPTIONAL:
      if t is not None and t.optional_type is None: raise ValueError(f"OnnxRunner: input {vi.name!r} is None but the model declares it {_type_str(t)}")
      return NONE_OPTIONAL
    if t is not None and t.optional_type is not None and t.optional_type.elem_type is not None: t = t.optional_type.elem_type
    if isinstance(x, (list, tuple)) and (t is None or t.sequence_type is not None):
      et = t.sequence_type.elem_type if t is not None else None
      return [self._check_tensor(vi.name, et, e) for e in x]
    if t is not None and t.sequence_type is not None: raise TypeError(f"OnnxRunner: input {vi.name!r} is a sequence (give a list), got {type(x).__name__}")
    return self._check_tensor(vi.name, t, x)

  def _check_tensor(self, name: str, t: Type | None, x) -> Any:
    tt = t.tensor_type if t is not None else None
    declared = tt.elem_type if tt is not None else 0
    if not isinstance(x, (Tensor, np.ndarray)): x = np.asarray(x, dtype=ELEM_TYPES[declared][1] if declared in ELEM_TYPES else None)
    if isinstance(x, np.ndarray) and x.dtype.kind in "US": x = x.astype(object)  # ONNX strings are object arrays
    got = DTYPE_TO_ONNX.get(x.dtype) if isinstance(x, Tensor) else _NP_TO_ONNX.get(x.dtype)
    if declared and got != declared: raise TypeError(f"OnnxRunner: input {name!r} has dtype {x.dtype}, the model declares {elem_type_name(declared)}")
    if tt is None: return x if isinstance(x, Tensor) else to_tensor(x, self.device)
    if tt.shape is not None:
      shape = tuple(x.shape)
      if len(shape) != len(tt.shape.dim):
        raise ValueError(f"OnnxRunner: input {name!r} has shape {shape}, the model declares rank {len(tt.shape.dim)}: {_shape_str(tt.shape)}")
      for i, (d, s) in enumerate(zip(tt.shape.dim, shape)):
        if d.dim_value is not None and d.dim_param is None and d.dim_value >= 0 and d.dim_value != s:
          raise ValueError(f"OnnxRunner: input {name!r} has shape {shape}, the model declares {_shape_str(tt.shape)} (dim {i} must be {d.dim_value})")
    if isinstance(x, Tensor): return x if self.device is None else x.to(self.device)
    return to_tensor(x, self.device)

  # ---- graphs ----
  def _initializers(self, graph: Graph) -> dict[str, Any]:
    if (inits := self._inits.get(id(graph))) is None:
      inits = {}
      for t in graph.initializer: inits[t.name] = self._constant(t.to_numpy(graph.base_dir))
      for st in graph.sparse_initializer:
        if st.values is not None: inits[st.values.name] = self._constant(st.to_numpy(graph.base_dir))
      self._inits[id(graph)] = inits
    return inits

  def _constant(self, arr: np.ndarray) -> Any:
    """A host array as a runner value whose host value ctx.const knows without a realize."""
    v = to_tensor(arr, self.device)
    self._host[id(v)] = (v, arr)
    return v

  def _host_value(self, x) -> np.ndarray:
    if x is None: raise ValueError("ctx.const: the input is missing (an omitted optional input)")
    if isinstance(x, np.ndarray): return x
    if not isinstance(x, Tensor): raise TypeError(f"ctx.const: expected a tensor, got {type(x).__name__}")
    if (hit := self._host.get(id(x))) is not None and hit[0] is x: return hit[1]
    if (hit := self._frame_host.get(id(x))) is not None and hit[0] is x: return hit[1]
    arr = x.numpy()
    self._frame_host[id(x)] = (x, arr)
    return arr

  def _run_graph(self, graph: Graph, inputs: list, outer, opsets: dict[str, int], top: bool = False) -> list:
    if not top and len(inputs) != len(graph.input):
      raise ValueError(f"subgraph {graph.name!r} takes {len(graph.input)} inputs ({[v.name for v in graph.input]}), given {len(inputs)}")
    local: dict[str, Any] = dict(self._initializers(graph))
    if top: local.update(outer.maps[0]); scope = ChainMap(local)
    else:
      scope = outer.new_child(local)
      for vi, v in zip(graph.input, inputs): local[vi.name] = v
    self._run_nodes(graph.node, scope, opsets, graph.base_dir)
    return [self._read(scope, o.name, f"graph {graph.name!r} output") for o in graph.output]

  def _read(self, scope, name: str, who: str) -> Any:
    try: v = scope[name]
    except KeyError: raise ValueError(f"{who}: {name!r} is not an input, initializer or output of an earlier node") from None
    if isinstance(v, _Missing): raise ValueError(f"{who}: {name!r} is {v.what}")
    return v

  def _run_nodes(self, nodes: list[Node], scope: ChainMap, opsets: dict[str, int], base_dir, fn_attrs: dict[str, Attribute] | None = None):
    for node in nodes:
      domain = _domain(node.domain)
      who = f"node {node.name!r} ({node.op_type})" if node.name else f"node {node.op_type}"
      inputs = [self._read(scope, n, who) if n else None for n in node.input]
      attrs = {}
      for a in node.attribute:
        if a.ref_attr_name:  # inside a function body: the caller's attribute of that name, or absent
          if fn_attrs is None: raise ValueError(f"{who}: attribute {a.name!r} refers to {a.ref_attr_name!r} outside a function")
          if (src := fn_attrs.get(a.ref_attr_name)) is None: continue
          a = Attribute(**{**src.__dict__, "name": a.name})
        attrs[a.name] = a.value(base_dir)
      if (fn := self.functions.get((domain, node.op_type))) is not None:
        outs = self._call_function(fn, node, inputs, scope, who)
      else:
        if domain not in opsets:
          raise NotImplementedError(f"{who}: ONNX op {node.op_type!r} of domain {domain or 'ai.onnx'!r}: the model imports no opset for that domain "
                                    f"(it imports {sorted(opsets)})")
        cacheable = node.op_type == "Constant" and not any(a.ref_attr_name for a in node.attribute)  # a function's Constant may differ per call
        if cacheable and id(node) in self._const_nodes: outs = self._const_nodes[id(node)]
        else:
          fn_op = lookup(node.op_type, domain, opsets[domain])
          ctx = Context(self, opsets[domain], scope, opsets, node)
          try: outs = fn_op(ctx, inputs, attrs)
          except Exception as e:
            e.add_note(f"while running {who} of the ONNX model (opset {opsets[domain]})")
            raise
          if cacheable:
            outs = list(outs)
            for v in outs:
              if isinstance(v, Tensor): self._host[id(v)] = (v, v.numpy())
            self._const_nodes[id(node)] = outs
      for i, name in enumerate(node.output):
        if name: scope[name] = outs[i] if i < len(outs) else _Missing(f"output {i} of {who}, which its op does not produce")

  def _call_function(self, fn: Function, node: Node, inputs: list, scope: ChainMap, who: str) -> list:
    """A model-local function expanded inline: its body sees only its own inputs and attributes."""
    fn_attrs = {a.name: a for a in fn.attribute_proto}
    fn_attrs.update({a.name: a for a in node.attribute})
    body: dict[str, Any] = {}
    for i, name in enumerate(fn.input):
      if name: body[name] = inputs[i] if i < len(inputs) and inputs[i] is not None else _Missing(f"input {i} of function {fn.name!r}, not given by {who}")
    opsets = {_domain(o.domain): int(o.version) for o in fn.opset_import} or dict(self.opsets)
    for d, v in self.opsets.items(): opsets.setdefault(d, v)
    fscope = ChainMap(body)
    self._run_nodes(fn.node, fscope, opsets, self.graph.base_dir, fn_attrs)
    return [self._read(fscope, o, f"function {fn.name!r} output") for o in fn.output]

def _domain(d: str) -> str: return "" if d == "ai.onnx" else d

def _shape_str(s) -> str: return "(" + ", ".join(str(d.dim_value) if d.dim_value is not None else (d.dim_param or "?") for d in s.dim) + ")"

def _type_str(t: Type | None) -> str:
  if t is None: return "untyped"
  if t.tensor_type is not None: return f"tensor {elem_type_name(t.tensor_type.elem_type)}" + (_shape_str(t.tensor_type.shape) if t.tensor_type.shape is not None else "")
  if t.sequence_type is not None: return f"sequence of {_type_str(t.sequence_type.elem_type)}"
  if t.optional_type is not None: return f"optional {_type_str(t.optional_type.elem_type)}"
  return "map" if t.map_type is not None else "sparse tensor" if t.sparse_tensor_type is not None else "opaque"

def run(model, inputs) -> list:
  """Run a model (path, bytes or Model) once: inputs a dict by name or a list in the order of the model's inputs;
  returns the outputs as a list of Tensors in the model's order."""
  r = model if isinstance(model, OnnxRunner) else OnnxRunner(model)
  if isinstance(inputs, (list, tuple)): inputs = {vi.name: x for vi, x in zip(r.inputs, inputs)}
  out = r(inputs)
  return [out[n] for n in r.outputs]

