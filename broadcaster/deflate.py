"""permessage-deflate whose inflation stops at the message cap, as it happens.

wsproto's extension inflates every compressed chunk whole before anyone can
look at its size, so a client sending a megabyte of zeros, compressed to a
kilobyte, made the worker hold the gigabyte it inflates to.  Here each chunk
is inflated at most to what the message may still grow by, and a message
that would grow past ``HUB_WS_MAX_FRAME_BYTES`` closes the connection with
1009 before its bytes exist.

simple-websocket negotiates the extension during the handshake;
:func:`bound` swaps the negotiated instance for this one (same parameters)
before the first frame, when nothing has been compressed yet.
"""

from __future__ import annotations

import zlib

from wsproto.connection import Connection
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol


class BoundedDeflate(PerMessageDeflate):
    """The negotiated permessage-deflate, with inflation bounded per message."""

    def __init__(self, negotiated: PerMessageDeflate, max_message_bytes: int) -> None:
        super().__init__(
            client_no_context_takeover=negotiated.client_no_context_takeover,
            client_max_window_bits=negotiated.client_max_window_bits,
            server_no_context_takeover=negotiated.server_no_context_takeover,
            server_max_window_bits=negotiated.server_max_window_bits,
        )
        self._enabled = negotiated.enabled()
        self.max_message_bytes = max_message_bytes
        self._inflated = 0  # bytes the message being received has inflated to so far

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._inbound_is_compressible and self._inbound_compressed):
            if fin:
                self._inflated = 0
            return super().frame_inbound_complete(proto, fin)
        tail = self._inflate(b"\x00\x00\xff\xff")  # what ends every compressed message
        if isinstance(tail, CloseReason):
            return tail
        self._inflated = 0
        # The rest is wsproto's: drop the context if negotiated so, end the message.
        if self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None  # noqa: S101 - wsproto made it for a compressed frame
        room = self.max_message_bytes - self._inflated
        try:
            inflated = decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self.max_message_bytes or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated


def bound(protocol: Connection, max_message_bytes: int) -> bool:
    """Replace the permessage-deflate that the handshake negotiated by a bounded one.

    Returns whether the connection uses permessage-deflate at all.
    """
    frames = protocol._proto
    bounded: dict[int, BoundedDeflate] = {}
    # The frame protocol (sending) and its decoder (receiving) may hold separate lists.
    for extensions in (frames.extensions, frames._frame_decoder.extensions):
        for index, extension in enumerate(extensions):
            if isinstance(extension, PerMessageDeflate) and extension.enabled():
                if not isinstance(extension, BoundedDeflate):
                    if id(extension) not in bounded:
                        bounded[id(extension)] = BoundedDeflate(extension, max_message_bytes)
                    extensions[index] = bounded[id(extension)]
                else:
                    bounded[id(extension)] = extension
    return bool(bounded)
