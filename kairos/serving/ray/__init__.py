"""The Ray backend: instances as actors, the detached router, Ray sessions and jobs."""
