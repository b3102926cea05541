"""One module per distribution policy; every module here is imported by the registry."""
