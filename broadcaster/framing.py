"""Server frames as bytes, built once per worker for every connection that sends them.

A server's frame is the same bytes for every client that takes the same
encoding: plain, or deflated on its own at the same window size (the shared
mode of ``HUB_WS_DEFLATE``).  Only a connection whose deflate keeps a context
between messages (wsproto's, per connection) must frame each event itself.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from broadcaster.hub import Envelope


def text_frame(payload: bytes) -> bytes:
    """An unfragmented text frame as a server sends it (unmasked; RFC 6455 section 5.2)."""
    return frame_header(0x81, len(payload)) + payload


def frame_header(first: int, length: int) -> bytes:
    """A server frame's header: ``first`` (FIN, RSV bits, opcode) and the payload length."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class FrameCache:
    """Each event's frame bytes, built once for every connection that sends it.

    A server's frame is the same bytes for every client that takes the same
    encoding (plain, or deflated without context at the same window size), so
    fan-out to K clients encodes an event once, not K times (wsproto would
    rebuild it per client).  Bounded in bytes; the oldest go first.
    """

    def __init__(self, max_bytes: int, build: Callable[[bytes], bytes] = text_frame) -> None:
        self.max_bytes = max_bytes
        self.build = build
        # An OrderedDict, not a dict: evicting from the front of a plain dict makes
        # finding its next oldest key slower the more keys were evicted before.
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        # The last run joined: the list it was given, its length then, and the bytes.
        self._joined: tuple[list[Envelope], int, bytes | None] | None = None

    def get(self, envelope: Envelope) -> bytes:
        frame = self._frames.get(envelope.seq)
        if frame is not None:
            return frame
        frame = self.build(envelope.frame)
        if envelope.seq and len(frame) <= self.max_bytes:
            self._frames[envelope.seq] = frame
            self._bytes += len(frame)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._frames.popitem(last=False)[1])
        return frame

    def joined(self, envelopes: list[Envelope], limit: int) -> bytes | None:
        """The frames of ``envelopes`` as one write; ``None`` when they take over ``limit`` bytes.

        The fan-out offers each run of events, as one list, to every subscriber
        that wants all of it, so the last run's bytes are kept for the next
        connection: a run of ten events to a hundred clients is joined once, not
        a hundred times.  At most ``limit`` bytes are kept.
        """
        last = self._joined
        if last is not None and last[0] is envelopes and last[1] == len(envelopes):
            return last[2]
        parts = [self.get(envelope) for envelope in envelopes]
        data = b"".join(parts) if sum(map(len, parts)) <= limit else None
        self._joined = (envelopes, len(envelopes), data)
        return data


#: This worker's frames; an event's seq names it within the worker's store.  A frame is
#: only needed while connections still have its event queued, so 2 MiB (some thousands of
#: events) suffices and keeps a long-running worker's memory flat (the soak run measures it).
FRAME_CACHE_BYTES = 2 * 1024 * 1024
FRAMES = FrameCache(FRAME_CACHE_BYTES)
_DEFLATED: dict[int, FrameCache] = {}


def deflated_frames(window_bits: int) -> FrameCache:
    """The worker's frames deflated without context at ``window_bits`` (one cache per size)."""
    cache = _DEFLATED.get(window_bits)
    if cache is None:
        cache = _DEFLATED[window_bits] = FrameCache(
            FRAME_CACHE_BYTES, partial(deflated_text_frame, window_bits=window_bits)
        )
    return cache


def deflated_text_frame(payload: bytes, window_bits: int) -> bytes:
    """A text frame compressed on its own (RFC 7692 section 7.2.1), RSV1 set.

    A fresh compressor refers to nothing sent before, so every client
    inflates it, whether or not it keeps its context between messages.
    """
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return frame_header(0xC1, len(data)) + data
