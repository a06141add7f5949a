"""See inside: with VIZ=1 every graph rewrite is recorded, step by step, in groups (program > realize > schedule / kernel
> pass), and `data()` is the recording as the JSON object the web view reads (VIZFORMAT version 1; the recorder is
viz/record.py, docs/design/0031-rewrite-tracking.md). With VIZ=1 in the environment the recording is saved at exit
($VIZ_FILE, default ./viz.json) and served (viz/server.py) unless VIZ_SERVE=0."""
from __future__ import annotations
import atexit, json, os
from typing import Callable
from lucidgrad.uop.pattern import VIZ
from lucidgrad.viz import record

__all__ = ["VIZ", "group", "data", "save", "reset"]

class _Off:
  """What `group` returns when VIZ is off: a context manager that does nothing."""
  __slots__ = ()
  info: dict = {}
  def __enter__(self): return self
  def __exit__(self, *exc): return False
  def set(self, **kw): pass
_OFF = _Off()

class _Group:
  """An open group: `info` is its info dict (add to it until the recording is saved), `name` can be set while open."""
  __slots__ = ("g",)
  def __init__(self, kind: str, name: str, info: dict): self.g = record.open_group(kind, name, info)
  def __enter__(self): return self
  def __exit__(self, *exc):
    record.close_group(self.g)
    return False
  @property
  def info(self) -> dict: return self.g["info"] if self.g is not None else {}
  def set(self, name: str | None = None, **info):
    """Rename the group and/or add to its info."""
    if self.g is None: return
    if name is not None: self.g["name"] = name
    self.g["info"].update(info)

def group(kind: str, name: str, /, **info) -> _Group | _Off:
  """`with viz.group("kernel", "E_4", reason=...) as g:` records everything inside the block under a new group of that
  kind, nested in the group open around it (group 0, the program, when none is). Does nothing when VIZ is off."""
  return _Group(kind, name, info) if VIZ.value else _OFF

def reset():
  """Drop what was recorded; the next rewrite starts a new recording."""
  record.reset()

def data() -> dict:
  """The recording as the trace object of VIZFORMAT.md (version 1): JSON-serialisable."""
  from lucidgrad.engine import profile
  from lucidgrad.helpers import PROFILE
  rec = record.rec
  return {"format": "lucidgrad-viz", "version": 1, "truncated": record.truncation(),
          "nodes": {str(i): {"op": op, "dtype": dt, "arg": arg, "src": src} for i, (op, dt, arg, src) in rec.nodes.items()},
          "groups": [dict(g, info=dict(g["info"])) for g in rec.groups], "passes": list(rec.passes),
          "caps": {"steps_per_pass": record.MAX_PASS_STEPS, "steps": record.MAX_STEPS, "nodes": record.MAX_NODES},
          "profile": profile.chrome_trace() if PROFILE.value or profile.trace else None}

def save(path: str | None = None) -> str:
  """Write data() as JSON to `path` (default $VIZ_FILE, else ./viz.json); returns the path."""
  path = path or os.environ.get("VIZ_FILE") or os.path.join(os.getcwd(), "viz.json")
  with open(path, "w") as f: json.dump(data(), f)
  return path

def _save_and_serve():
  if not record.rec.groups[1:] and not record.rec.passes: return
  path = save()
  print(f"viz: recording saved to {path}")
  if os.environ.get("VIZ_SERVE", "1") == "0": return
  try: from lucidgrad.viz.server import serve  # type: ignore[import-not-found]  # the web view (viz/server.py)
  except ImportError as e:
    print(f"viz: no web view to serve it ({e}); open it later with `python -m lucidgrad.viz {path}`")
    return
  serve(path, port=int(os.environ.get("VIZ_PORT", 0)), block=True)

if os.environ.get("VIZ", "0") not in ("", "0"): atexit.register(_save_and_serve)

# ---- the few places that open groups: realize (tensor.py), schedule, kernels (engine/realize.py) ----
def annotate(**info):
  """Add to the info of the innermost open group (nothing when VIZ is off or none is open)."""
  if VIZ.value and (rec := record.rec).open: rec.groups[rec.open[-1]]["info"].update(info)

def kernel_group(reason: str, device: str, copy_from: str | None = None, nbytes: int = 0) -> _Group | _Off:
  """A group for one item of a schedule: a kernel (named once built, `kernel_built`) or a copy."""
  if copy_from is None: return group("kernel", "kernel", reason=reason, device=device, kind="kernel")
  return group("kernel", f"copy {copy_from} -> {device}", reason=reason, device=device, kind="copy", bytes=int(nbytes))

def kernel_built(g: _Group | _Off, spec, has_local: bool, built_here: bool):
  """Fill in kernel group `g` from its program. `built_here`: codegen ran inside `g` (its passes are there); else the
  info names the group of this recording that built the program, or says it was built before the recording began."""
  if not isinstance(g, _Group) or g.g is None: return
  g.set(name=spec.name, **record.kernel_info(spec, g.info.get("reason", ""), g.info.get("device", ""), has_local))
  built = record.rec.built
  if built_here and id(spec) not in built: built[id(spec)] = g.g["id"]
  elif id(spec) in built: g.info["codegen"] = f"built earlier in this recording: group {built[id(spec)]}"
  else: g.info["codegen"] = "built before this recording started"

def was_built(spec) -> bool:
  """Whether a kernel group of this recording ran codegen for `spec`."""
  return id(spec) in record.rec.built

def cached_kernels(runners: list, reasons, has_local: Callable[[str], bool]) -> None:
  """A schedule-cache hit (VIZ): a kernel group per item it runs, with its reason and its program's facts; no codegen ran."""
  for r, why in zip(runners, reasons):
    if (spec := getattr(r, "spec", None)) is None:  # a copy: its runner is named "copy SRC -> DEST"
      with kernel_group(why, r.device, r.name.split(" ")[1] if r.name.startswith("copy ") else "?", r.mem_bytes): pass
      continue
    with kernel_group(why, r.device) as g: kernel_built(g, spec, has_local(r.device), False)
