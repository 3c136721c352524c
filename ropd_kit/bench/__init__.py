"""Benchmarks (`python -m ropd_kit.bench`): measurement, not the method. Results go to `reports/bench/`.

- `suite`:      the entry point — runs the benchmarks, writes one JSON each and the index page.
- `judge`:      judge throughput (local and latency replay), verification granularity, cache replay.
- `step`:       where a CPU training step's time goes, and teacher-side cost per scored rollout.
- `injection`:  prompt injection into the Verifier (`python -m ropd_kit.bench.injection`).
- `faultproxy`: a fault-injecting / latency-adding proxy in front of an OpenAI-compatible server, used by the
                judge benchmarks and by the hardening tests.
"""
