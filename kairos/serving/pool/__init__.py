"""Worker pools: local processes and remote workers, their supervisor and transport."""
