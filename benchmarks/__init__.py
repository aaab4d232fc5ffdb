"""asyncjobs benchmarks: run with ``just bench`` (``python -m benchmarks``)."""
