"""The web view of graph rewrites and the profiler timeline (docs/viz.md); the server is lucidgrad.viz.server."""
