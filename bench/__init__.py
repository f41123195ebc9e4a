"""Benchmarks that print figures; see docs/performance.md. Nothing here is a test."""
