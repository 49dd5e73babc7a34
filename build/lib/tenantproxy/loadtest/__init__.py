"""The load test: the write-up's Locust user, a runner that drives it against the stack, and a
sampler that records the stack's side (access API stages, database instances, the proxy) into
``samples.csv`` for the report.

Locust runs in its own processes (it monkey-patches with gevent); nothing here imports it except
``locustfile.py``, which only Locust loads.
"""
