"""The study around vsc, not the vsc library: the paper's claims as fixed numerical tests (claims.py), other
projects' published numbers (published.py), and the verdict sections they add to a sweep's report (report.py).
Used by benchmarks/results_summary.py and tests/test_claims.py; `vsc experiment` knows none of it."""
