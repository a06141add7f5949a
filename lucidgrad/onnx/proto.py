"""A protobuf wire-format decoder, written for ONNX files: messages described by a schema (field number -> name, kind,
repeated) are decoded into dataclasses. Every read is bounds-checked against its message's end, so damaged bytes raise
OnnxDecodeError (naming the field and offset) before anything is allocated for them; nothing here loops unboundedly."""
from __future__ import annotations
import dataclasses, struct
from typing import Any
import numpy as np

class OnnxDecodeError(ValueError):
  """A truncated, corrupt or malformed ONNX (protobuf) file; the message names the field and byte offset."""

MAX_DEPTH = 64  # nested messages (graphs in attributes in graphs ...): deeper than any real model, far short of Python's stack

VARINT, FIXED64, LEN, SGROUP, EGROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_U64 = 1 << 64
# scalar kinds: the wire type each is written with and, for fixed-width ones, the NumPy dtype of a packed run
_WIRE = {"int32": VARINT, "int64": VARINT, "uint32": VARINT, "uint64": VARINT, "bool": VARINT, "enum": VARINT, "sint32": VARINT,
         "sint64": VARINT, "float": FIXED32, "fixed32": FIXED32, "sfixed32": FIXED32, "double": FIXED64, "fixed64": FIXED64,
         "sfixed64": FIXED64, "string": LEN, "bytes": LEN}
_STRUCT = {"float": "<f", "fixed32": "<I", "sfixed32": "<i", "double": "<d", "fixed64": "<Q", "sfixed64": "<q"}
_NP_OF = {"int32": np.int64, "int64": np.int64, "uint32": np.int64, "uint64": np.uint64, "bool": np.bool_, "enum": np.int64, "sint32": np.int64,
          "sint64": np.int64, "float": np.float32, "fixed32": np.uint32, "sfixed32": np.int32, "double": np.float64, "fixed64": np.uint64,
          "sfixed64": np.int64}
_FIXED_NP = {"float": "<f4", "fixed32": "<u4", "sfixed32": "<i4", "double": "<f8", "fixed64": "<u8", "sfixed64": "<i8"}

def read_varint(buf, pos: int, end: int, what: str) -> tuple[int, int]:
  """(the unsigned 64-bit value of the varint at pos, the position after it). At most 10 bytes; bits past 64 are dropped."""
  result = shift = 0
  while True:
    if pos >= end: raise OnnxDecodeError(f"{what}: varint runs past the end of its message at offset {pos}")
    b = buf[pos]; pos += 1
    result |= (b & 0x7f) << shift
    if b < 0x80: return result & (_U64 - 1), pos
    shift += 7
    if shift >= 70: raise OnnxDecodeError(f"{what}: varint longer than 10 bytes at offset {pos - 10}")

def _signed(v: int, kind: str) -> int:
  """A decoded varint as its field's kind reads it: int64 two's complement, int32 its low 32 bits signed, sint zigzag."""
  if kind == "int64": return v - _U64 if v >= 1 << 63 else v
  if kind in ("int32", "enum"): v &= 0xffffffff; return v - (1 << 32) if v >= 1 << 31 else v
  if kind == "uint32": return v & 0xffffffff
  if kind in ("sint32", "sint64"): return (v >> 1) ^ -(v & 1)
  if kind == "bool": return bool(v)
  return v

def packed_varints(buf, start: int, end: int, kind: str, what: str) -> np.ndarray:
  """The varints of a packed repeated field, decoded at once with NumPy: int64 array (uint64 for uint64 fields)."""
  b = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
  if not len(b): return np.zeros(0, np.uint64 if kind == "uint64" else np.int64)
  ends = np.flatnonzero(b < 0x80)
  if not len(ends) or ends[-1] != len(b) - 1: raise OnnxDecodeError(f"{what}: packed varints cut off at offset {end}")
  starts = np.concatenate([[0], ends[:-1] + 1])
  lengths = ends - starts + 1
  if lengths.max() > 10: raise OnnxDecodeError(f"{what}: varint longer than 10 bytes in the packed run at offset {start}")
  vals = np.zeros(len(ends), np.uint64)
  for k in range(int(lengths.max())):
    sel = lengths > k
    vals[sel] |= (b[starts[sel] + k] & 0x7f).astype(np.uint64) << np.uint64(7 * k)
  if kind in ("int64", "enum"): return vals.view(np.int64)
  if kind in ("int32", "uint32"): return (vals & np.uint64(0xffffffff)).astype(np.uint32).view(np.int32 if kind == "int32" else np.uint32).astype(np.int64)
  if kind in ("sint32", "sint64"): return ((vals >> np.uint64(1)).view(np.int64) ^ -(vals & np.uint64(1)).view(np.int64))
  if kind == "bool": return vals != 0
  return vals

def skip_field(buf, pos: int, end: int, wt: int, num: int, what: str, depth: int = 0) -> int:
  """The position after an unknown field's value of wire type wt (groups skipped to their matching end)."""
  if wt == VARINT: return read_varint(buf, pos, end, what)[1]
  if wt in (FIXED64, FIXED32):
    if pos + (8 if wt == FIXED64 else 4) > end: raise OnnxDecodeError(f"{what}: field {num} runs past the end of its message at offset {pos}")
    return pos + (8 if wt == FIXED64 else 4)
  if wt == LEN:
    n, pos = read_varint(buf, pos, end, what)
    if n > end - pos: raise OnnxDecodeError(f"{what}: field {num} says {n} bytes at offset {pos}, {end - pos} are left")
    return pos + n
  if wt == SGROUP:
    if depth >= MAX_DEPTH: raise OnnxDecodeError(f"{what}: groups nested deeper than {MAX_DEPTH} at offset {pos}")
    while True:
      if pos >= end: raise OnnxDecodeError(f"{what}: group {num} has no end at offset {pos}")
      key, pos = read_varint(buf, pos, end, what)
      if key & 7 == EGROUP:
        if key >> 3 != num: raise OnnxDecodeError(f"{what}: group {num} ended as group {key >> 3} at offset {pos}")
        return pos
      pos = skip_field(buf, pos, end, key & 7, key >> 3, what, depth + 1)
  raise OnnxDecodeError(f"{what}: field {num} has the invalid wire type {wt} at offset {pos}")

def decode(cls, buf, start: int = 0, end: int | None = None, depth: int = 0):
  """An instance of the dataclass `cls` decoded from buf[start:end]. cls.FIELDS maps field numbers to (name, kind,
  repeated), kind a scalar kind name or another such dataclass; unknown fields are skipped. Repeated varint/fixed fields
  become NumPy arrays when packed and lists when not (both are accepted, as protobuf requires)."""
  end = len(buf) if end is None else end
  what = cls.__name__
  if depth > MAX_DEPTH: raise OnnxDecodeError(f"{what}: messages nested deeper than {MAX_DEPTH} at offset {start}")
  fields: dict[int, tuple[str, Any, bool]] = cls.FIELDS
  out: dict[str, Any] = {}
  pos = start
  while pos < end:
    key, pos = read_varint(buf, pos, end, what)
    num, wt = key >> 3, key & 7
    if num == 0: raise OnnxDecodeError(f"{what}: field number 0 at offset {pos}")
    spec = fields.get(num)
    if spec is None:
      pos = skip_field(buf, pos, end, wt, num, what)
      continue
    name, kind, repeated = spec
    where = f"{what}.{name}"
    if isinstance(kind, type):  # a nested message
      if wt != LEN: raise OnnxDecodeError(f"{where}: message field with wire type {wt} at offset {pos}")
      n, pos = read_varint(buf, pos, end, where)
      if n > end - pos: raise OnnxDecodeError(f"{where}: length {n} at offset {pos} is past the end of its message ({end - pos} bytes left)")
      val = decode(kind, buf, pos, pos + n, depth + 1)
      pos += n
    elif wt == LEN and kind in ("string", "bytes"):
      n, pos = read_varint(buf, pos, end, where)
      if n > end - pos: raise OnnxDecodeError(f"{where}: length {n} at offset {pos} is past the end of its message ({end - pos} bytes left)")
      raw = buf[pos:pos + n]
      if kind == "string":
        try: val = bytes(raw).decode("utf-8")
        except UnicodeDecodeError: raise OnnxDecodeError(f"{where}: not UTF-8 at offset {pos}") from None
      else: val = raw  # a memoryview of the input: raw_data is not copied here
      pos += n
    elif wt == LEN and repeated:  # a packed run of scalars
      n, pos = read_varint(buf, pos, end, where)
      if n > end - pos: raise OnnxDecodeError(f"{where}: packed length {n} at offset {pos} is past the end of its message ({end - pos} bytes left)")
      if kind in _FIXED_NP:
        size = np.dtype(_FIXED_NP[kind]).itemsize
        if n % size: raise OnnxDecodeError(f"{where}: packed length {n} at offset {pos} is not a multiple of {size}")
        val = np.frombuffer(buf, dtype=_FIXED_NP[kind], count=n // size, offset=pos)
      else: val = packed_varints(buf, pos, pos + n, kind, where)
      pos += n
      out.setdefault(name, []).append(val)
      continue
    elif wt == _WIRE.get(kind):
      if wt == VARINT:
        v, pos = read_varint(buf, pos, end, where)
        val = _signed(v, kind)
      else:
        size = 4 if wt == FIXED32 else 8
        if pos + size > end: raise OnnxDecodeError(f"{where}: {size}-byte value runs past the end of its message at offset {pos}")
        val = struct.unpack_from(_STRUCT[kind], buf, pos)[0]
        val = float(val) if kind in ("float", "double") else int(val)
        pos += size
    else: raise OnnxDecodeError(f"{where}: wire type {wt} does not fit a {kind} field at offset {pos}")
    if repeated: out.setdefault(name, []).append(val)
    else: out[name] = val  # the last one wins, as protobuf merges scalars
  if pos != end: raise OnnxDecodeError(f"{what}: the last field runs past the end of its message at offset {end}")
  for num, (name, kind, repeated) in fields.items():  # numeric repeated fields: one array from packed runs and single values
    if repeated and name in out and isinstance(kind, str) and kind not in ("string", "bytes"):
      parts = out[name]
      out[name] = np.concatenate([np.atleast_1d(np.asarray(p, _NP_OF[kind])) for p in parts]) if len(parts) > 1 or not isinstance(parts[0], np.ndarray) \
        else parts[0]
  return cls(**out)

def message_fields(cls) -> dict[str, dataclasses.Field]:
  """The dataclass fields of a message class, by name (for tests comparing field by field)."""
  return {f.name: f for f in dataclasses.fields(cls)}
