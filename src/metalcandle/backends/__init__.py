"""Backends. ``numpy_backend`` is the reference, the CPU path and the fallback of every device;
it is imported on the first ``eval``, never by ``import metalcandle``."""
