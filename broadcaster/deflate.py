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

In the shared mode of ``HUB_WS_DEFLATE`` the hub answers every offer with
``server_no_context_takeover`` and ``client_no_context_takeover``
(:func:`shared_offer`; RFC 7692 lets a server add both): it compresses each
frame on its own, once per worker (``broadcaster/framing.py``), and neither
side keeps a compression context between messages, so an idle connection
holds no zlib state at all.
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


#: What the shared mode accepts of any offer: no context kept on either side.
SHARED_ACCEPT = ("permessage-deflate", "server_no_context_takeover", "client_no_context_takeover")


def shared_offer(offers: str) -> str | None:
    """The client's first permessage-deflate offer as the shared mode accepts it.

    No context on either side; a ``server_max_window_bits`` the client asks for
    is kept (the hub then compresses with that window).  ``None``: no offer the
    hub can honour (zlib cannot compress within an 8-bit window).
    """
    for offer in offers.split(","):
        name, *parameters = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        windows = [p for p in parameters if p.lower().startswith("server_max_window_bits=")]
        if not windows:
            return "; ".join(SHARED_ACCEPT)
        bits = windows[0].partition("=")[2].strip().strip('"')
        if bits in {str(n) for n in range(9, 16)}:
            return "; ".join([*SHARED_ACCEPT, f"server_max_window_bits={bits}"])
    return None


def bound(protocol: Connection, max_message_bytes: int) -> int | None:
    """Replace the permessage-deflate that the handshake negotiated by a bounded one.

    Returns the window bits the hub compresses with, ``None`` without
    permessage-deflate.
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
    return next((int(e.server_max_window_bits) for e in bounded.values()), None)
