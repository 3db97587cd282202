"""Dispatch: the dispatcher process, claims, leases, bulk writes, the bus, the fleet registry,
circuit breakers and the worker client."""
