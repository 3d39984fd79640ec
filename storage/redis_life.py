"""A deployment's lifecycle entries in the Redis store (``P life:<id>``), kept deflated.

The list holds what the fold folds: each lifecycle event's type, project and body
(``storage/bodies.py``).  It is read only to fold a deployment again, and it is
the largest list a short deployment keeps, so each entry is deflated: raw deflate
against :data:`LIFE_DICTIONARY` (zlib's preset dictionary), which a lone entry of a
hundred-odd bytes needs to find anything to refer back to.  The append script puts
the event's seq in front, as it hands seqs out: ``<seq>:<deflated JSON>``.

Entries written before read as they are: ``[seq, type, project, body]`` as JSON
(before seqs, the event's id for seq).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

#: The keys and common values of an entry's JSON, most common last.  Never changed:
#: every entry deflated with it needs it to be read (a better dictionary would need a
#: new entry spelling, told apart when read).
LIFE_DICTIONARY = (
    b'"deployment_rollback",{"t":"20","q":{"source_format":"rollback":"retry":true,'
    b'"step_number":"message":"started_at":"20","actor":"repository":"workflow_id":'
    b'"run_url":"https://github.com/","extra":{"environment_url":"version":'
    b'["step_started","",{"t":"20","q":{"job":"","step":"","status":"running"},"a":1}]'
    b'["deployment_started","",{"t":"20","q":{"status":"running","branch":"main","commit":"'
    b'","environment":"production","workflow_name":"Deploy"},"a":1}]'
    b'["step_completed","",{"t":"20","q":{"job":"build","step":"","status":"failure",'
    b'"duration_ms":,"error":""},"a":2}]'
    b'["step_completed","",{"t":"20","q":{"job":"deploy","step":"","status":"success",'
    b'"duration_ms":'
    b'["deployment_completed","",{"t":"20","q":{"status":"success"},"a":2}]'
)
#: Raw deflate (no header or checksum: a few bytes less per entry) with a 2 KiB window,
#: which holds the dictionary and an entry; its small state makes deflating one quick.
_WINDOW_BITS = -11
_MEMORY_LEVEL = 2


def pack_life(event_type: str, project: str, body: bytes) -> bytes:
    """What the append script keeps of a lifecycle event after its seq and ``:``."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, _WINDOW_BITS, _MEMORY_LEVEL, zdict=LIFE_DICTIONARY)
    entry = b"[%s,%s,%s]" % (orjson.dumps(event_type), orjson.dumps(project), body)
    return deflate.compress(entry) + deflate.flush()


def unpack_life(raw: bytes) -> tuple[int | str, str, str, Any]:
    """``(seq, type, project, body)`` of an entry (an entry written before seqs: its id)."""
    if raw[:1] == b"[":
        seq, event_type, project, body = orjson.loads(raw)
        return seq, event_type, project, body
    seq, _, packed = raw.partition(b":")
    inflate = zlib.decompressobj(_WINDOW_BITS, zdict=LIFE_DICTIONARY)
    event_type, project, body = orjson.loads(inflate.decompress(packed) + inflate.flush())
    return int(seq), event_type, project, body
