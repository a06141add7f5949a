"""The web view's server: a stdlib HTTP server on a thread, bound to a loopback address only (a free port unless one is
given), serving the page in static/ and one recording as /data.json (docs/viz.md; the data's shape: VIZFORMAT, version 1).
`python -m lucidgrad.viz FILE` (__main__.py) serves a saved recording or a Chrome trace with it."""
from __future__ import annotations
import ipaddress, json, os, pathlib, socket, socketserver, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATIC = pathlib.Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/index.html": "index.html", "/viz.js": "viz.js", "/viz.css": "viz.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
VERSION = 1   # the newest recording format this page reads

def view_data(obj: Any, where: str = "data") -> dict:
  """The object the page reads, from a recording (a dict of the viz format: returned with its missing keys filled) or a
  Chrome trace (a dict with `traceEvents`: a recording with no graphs whose `profile` is the trace, shown as the timeline
  alone). Raises ValueError naming `where` for anything else."""
  if not isinstance(obj, dict): raise ValueError(f"{where}: a viz recording or a Chrome trace is a JSON object, not {type(obj).__name__}")
  if "traceEvents" in obj:
    if not isinstance(obj["traceEvents"], list): raise ValueError(f"{where}: traceEvents is {type(obj['traceEvents']).__name__}, not a list")
    return {"format": "lucidgrad-viz", "version": VERSION, "truncated": None, "nodes": {}, "groups": [], "passes": [], "profile": obj, "source": "trace"}
  if obj.get("format") != "lucidgrad-viz":
    raise ValueError(f"{where}: not a lucidgrad viz recording (its format is {obj.get('format')!r}, not 'lucidgrad-viz') nor a Chrome trace (no traceEvents)")
  if not isinstance(v := obj.get("version"), int) or v > VERSION:
    raise ValueError(f"{where}: recording version {v!r}: this view reads versions up to {VERSION}")
  for key, default, kind in (("nodes", {}, dict), ("groups", [], list), ("passes", [], list)):
    if not isinstance(obj.get(key, default), kind): raise ValueError(f"{where}: '{key}' is {type(obj[key]).__name__}, not a {kind.__name__}")
  if obj.get("profile") is not None and not isinstance(obj["profile"].get("traceEvents") if isinstance(obj["profile"], dict) else None, list):
    raise ValueError(f"{where}: 'profile' is not a Chrome trace (an object with a traceEvents list)")
  return {"truncated": None, "nodes": {}, "groups": [], "passes": [], "profile": None, **obj}

def load(path: str | os.PathLike) -> dict:
  """The page's data from a saved file (a viz recording or a Chrome trace, see view_data). Raises FileNotFoundError for a
  missing file and ValueError naming the file for one that is not such JSON."""
  p = pathlib.Path(path)
  if not p.exists(): raise FileNotFoundError(f"viz: no such file: {p}")
  if p.is_dir(): raise ValueError(f"viz: {p} is a directory, not a saved recording or trace")
  try: obj = json.loads(p.read_bytes())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    detail = f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
    raise ValueError(f"viz: {p} is not valid JSON ({detail}): is it a saved recording (VIZ=1) or a trace (PROFILE=1)?") from None
  return view_data(obj, str(p))

def _loopback(host: str) -> str:
  """`host` as an address to bind, checked to be a loopback one: the view is for this machine only."""
  addr = "127.0.0.1" if host == "localhost" else host
  try: ok = ipaddress.ip_address(addr).is_loopback
  except ValueError: ok = False
  if not ok: raise ValueError(f"serve: host {host!r} is not a loopback address: the view is served to this machine only (use 127.0.0.1)")
  return addr

class _Handler(BaseHTTPRequestHandler):
  server: _HTTPServer
  def do_GET(self):
    # a page elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) sends its own name as Host: refused
    hostname = self.headers.get("Host", "").rsplit(":", 1)[0].strip("[]")
    if not ipaddress.ip_address(self.client_address[0]).is_loopback or hostname not in ("127.0.0.1", "localhost", "::1", self.server.bound):
      return self.send_error(403, "the view answers this machine only")
    route = self.path.split("?", 1)[0]
    if route == "/data.json": body, ctype = self.server.data_bytes, "application/json"
    elif route in PAGES: body, ctype = (STATIC / PAGES[route]).read_bytes(), TYPES[pathlib.Path(PAGES[route]).suffix]
    else: return self.send_error(404, f"no {route} here: the view is at /")
    self.send_response(200)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.end_headers()
    self.wfile.write(body)
  def log_message(self, format, *args): pass   # a request per file: the terminal keeps only the URL line

class _HTTPServer(ThreadingHTTPServer):
  daemon_threads = True
  def __init__(self, addr: str, port: int, data_bytes: bytes):
    self.address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    self.bound, self.data_bytes = addr, data_bytes
    super().__init__((addr, port), _Handler)
  def server_bind(self):   # HTTPServer's own asks DNS for the host's full name: nothing the view needs, and slow offline
    socketserver.TCPServer.server_bind(self)
    self.server_name, self.server_port = self.bound, self.server_address[1]

class Server:
  """A running view: `url` to open, `port`, and `close()` (stops serving and frees the port)."""
  def __init__(self, httpd: _HTTPServer):
    self.httpd, self.port = httpd, httpd.server_address[1]
    host = httpd.bound if ":" not in httpd.bound else f"[{httpd.bound}]"
    self.url = f"http://{host}:{self.port}/"
    self.thread = threading.Thread(target=httpd.serve_forever, name="viz-server", daemon=True)
    self.thread.start()
  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()
    self.thread.join()
  def __enter__(self): return self
  def __exit__(self, *exc): self.close()

def serve(path_or_data: str | os.PathLike | dict, port: int = 0, block: bool = True, host: str = "127.0.0.1") -> Server:
  """Serve the view of a recording (a path to a saved viz JSON or Chrome trace JSON, or the data itself: `viz.data()`)
  at http://127.0.0.1:PORT/ and print the URL. `port=0` takes a free port. `block=False` returns the running Server at
  once (`.url`, `.close()`); `block=True` serves until Ctrl-C, then closes it and returns it. Only a loopback `host` is
  accepted (ValueError otherwise): the server never listens on the network."""
  data = view_data(path_or_data) if isinstance(path_or_data, dict) else load(path_or_data)
  if not isinstance(port, int) or not 0 <= port < 65536: raise ValueError(f"serve: port {port!r} is not 0 (any free port) or 1-65535")
  addr = _loopback(host)
  try: httpd = _HTTPServer(addr, port, json.dumps(data, separators=(",", ":")).encode())
  except OSError as e: raise OSError(f"serve: cannot listen on {addr}:{port} ({e.strerror or e}): is the port in use? port=0 takes a free one") from None
  srv = Server(httpd)
  what = "the trace" if data.get("source") == "trace" else "the recording"
  print(f"viz: serving {what} at {srv.url}" + (" (Ctrl-C to stop)" if block else ""), flush=True)
  if block:
    try:
      while srv.thread.is_alive(): srv.thread.join(0.5)
    except KeyboardInterrupt: pass
    srv.close()
  return srv
