"""Cells: a pool split into N cells, each served by its own router process, behind a load
balancer (HAProxy) that Kairos configures and runs (``kairos serve --cells N``; docs/cells.md).

``config.py`` holds the settings, ``balancer.py`` writes the balancer's configuration and runs
HAProxy, ``cellset.py`` starts, watches and resizes the routers, ``child.py`` is one cell's
router process and ``metrics.py`` the aggregate view of every router's ``/metrics``.
"""
