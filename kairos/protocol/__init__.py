"""What travels between client, router and worker: KServe v2 tensors, worker frames, API paths."""
