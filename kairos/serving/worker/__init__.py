"""One instance's worker: the service, model handlers, CPU shares, the worker's launch spec."""
