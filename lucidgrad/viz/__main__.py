"""`python -m lucidgrad.viz FILE [--port N]`: serve the web view of a saved recording (VIZ=1 writes viz.json) or of a
Chrome trace (PROFILE=1 writes profile.json: the timeline and memory view alone) until Ctrl-C."""
import argparse, sys
from lucidgrad.viz.server import serve

def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m lucidgrad.viz", description="Serve the web view of a saved viz recording or Chrome trace on 127.0.0.1.")
  ap.add_argument("file", help="a viz recording (VIZ=1, viz.json) or a Chrome trace (PROFILE=1, profile.json)")
  ap.add_argument("--port", type=int, default=0, help="the port to listen on (default: any free one)")
  args = ap.parse_args(argv)
  try: serve(args.file, port=args.port, block=True)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0

if __name__ == "__main__": sys.exit(main())
