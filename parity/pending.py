"""Parity cases instar does not pass yet, each with the reason (a known gap of
issue 10, listed in docs/differences.md).

They run as strict xfails: a case that starts to pass fails the suite until
it is taken off this list.  In the harness self-check (INSTAR=qemu-img) they
run as ordinary cases.
"""

PENDING: dict[str, dict[str, str]] = {}
