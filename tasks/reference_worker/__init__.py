"""The reference worker: a real HTTP service speaking worker protocol v1 (docs/worker-protocol.md).

It is what the embedded default runs next to the control plane and what tests and
benchmarks call, with task kinds ``echo``, ``sleep`` and ``fail`` and fault injection
(503s, latency, hangs, dropped streams). Standard library only, no Django: run it with
``python -m tasks.reference_worker`` or ``python manage.py reference_worker``.
"""
