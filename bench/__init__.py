"""The benchmark suite: every hot path beside its raw baseline, in one command.

``python -m bench`` runs every workload at full scale and writes
``bench/results/latest.json``; ``python -m bench --quick`` runs each at small
scale and checks only that it produced its numbers. Each workload module
holds one figure; ``harness`` holds timing, process figures and the report.
"""
