"""The live serving runtime: router (KServe v2 over HTTP), workers, load generator.

The router drives the same ``ClusterState`` and policy objects as the simulator, on the wall
clock; see docs/runtime.md.
"""
