"""The profiler's events: with PROFILE=1 the run loop (engine/realize.py::run_items) records one event per kernel and
copy it runs, eager or replayed by the JIT, on every device (NULL's durations are its model). A viewer reads `events`."""
from __future__ import annotations
from dataclasses import dataclass

@dataclass(frozen=True)
class ProfileEvent:
  kind: str         # "kernel" | "copy"
  name: str         # the kernel's name, or "copy CPU -> NULL"
  device: str       # where it ran (a copy: its destination)
  start: float      # host clock (time.perf_counter) when it was launched
  duration: float   # seconds of device time, as the device's timing events measured it
  flops: int
  mem_bytes: int

events: list[ProfileEvent] = []

def take_events() -> list[ProfileEvent]:
  """The events recorded so far, oldest first; the list starts over empty."""
  out = events[:]
  events.clear()
  return out
