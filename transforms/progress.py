"""Live progress of the writes, for the launching process to report while a run goes on.

Beam metrics are only reported after a run ends. For live progress the sink also adds
to these process-wide counters, which a thread in the launching process reads; this
works whenever the SDK worker runs in that process (FnApiRunner in-process, and Flink
with ``--environment_type=LOOPBACK``). Elsewhere the counters simply stay at zero and
only the final report is printed.
"""

from __future__ import annotations

import threading


class _WriteProgress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes = 0
        self._relationships = 0

    def add(self, nodes: int = 0, relationships: int = 0) -> None:
        with self._lock:
            self._nodes += nodes
            self._relationships += relationships

    def snapshot(self) -> tuple[int, int]:
        """``(nodes, relationships)`` written so far by this process."""
        with self._lock:
            return self._nodes, self._relationships

    def reset(self) -> None:
        with self._lock:
            self._nodes = 0
            self._relationships = 0


WRITE_PROGRESS = _WriteProgress()
