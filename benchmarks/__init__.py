"""Benchmark harness: stream_app workers next to a ceiling, a plain-Faust baseline and a Quix Streams peer.

Run ``python -m benchmarks.bench --help``; see benchmarks/README.md.
"""
