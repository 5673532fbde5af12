"""Benchmark scripts, each run on its own; each prints a table and writes JSON under bench/results/."""
