"""How long this worker's own events take from their commit to their subscribers' queues."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from app.metrics import DELIVERIES, FANOUT_LAG_SECONDS
from broadcaster.hub import Envelope


class FanoutClock:
    """When this worker stored its recent events, so the hub can time their fan-out.

    Ingest records each stored sequence number with the time of its commit;
    the hub's dispatch callback observes the time since then once for each
    commit time among a run of events that reached a subscriber (so one
    sample per request, not one per event of a batch).  Only this worker's
    own events are timed (another worker's commit time is not known here),
    which with several workers is a sample of the traffic.  Both ends run in
    order of sequence number, so a bounded deque is enough; while nobody
    subscribes, old entries simply fall off its left end.
    """

    def __init__(self, capacity: int = 10000) -> None:
        self._stored: deque[tuple[int, float]] = deque(maxlen=capacity)

    def stored(self, seqs: Iterable[int]) -> None:
        now = time.monotonic()
        self._stored.extend((seq, now) for seq in seqs)

    def dispatched(self, run: list[Envelope], delivered: int) -> None:
        """``run``: envelopes in order of seq; ``delivered``: frames queued for them."""
        if delivered:  # counted here, once per run, not by each connection's writer
            DELIVERIES.inc(delivered)
        stored, first, last = self._stored, run[0].seq, run[-1].seq
        while stored and stored[0][0] < first:
            stored.popleft()
        timed = None
        while stored and stored[0][0] <= last:
            _, at = stored.popleft()
            if delivered and at != timed:
                FANOUT_LAG_SECONDS.observe(time.monotonic() - at)
                timed = at
