"""Reliability suite (issue 6): differential random graphs, bad input, fault injection, leaks and
threads. See docs/reliability.md."""
