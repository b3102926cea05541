"""The live data plane: the router, its worker pools, the workers, the Ray backend."""
