"""Latency, throughput and FLOPs measurements."""
