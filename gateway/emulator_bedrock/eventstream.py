"""Encode AWS event-stream messages (botocore only decodes them).

Wire format, per message: total length (uint32), headers length (uint32), CRC32 of those
eight bytes, the headers, the payload, then the CRC32 of everything before it. Each
header is name length (uint8), name, value type (uint8; 7 = string), value length
(uint16), value. All integers big-endian. Bedrock only sends string headers.
"""

from __future__ import annotations

import base64
import binascii
import struct

import orjson

STRING_TYPE = 7
JSON_CONTENT_TYPE = "application/json"
# Bedrock pads chunk payloads with a `p` field of letters so sizes leak less.
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _header(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(encoded_name))
        + encoded_name
        + struct.pack(">BH", STRING_TYPE, len(encoded_value))
        + encoded_value
    )


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    total_length = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total_length, len(header_bytes))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + header_bytes + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def chunk_frame(event_json: bytes, *, padding_length: int = 0) -> bytes:
    """A `chunk` event carrying one model event, base64-encoded the way Bedrock does."""
    document = {"bytes": base64.b64encode(event_json).decode("ascii")}
    if padding_length:
        document["p"] = (PADDING * (padding_length // len(PADDING) + 1))[:padding_length]
    return encode_message(
        {
            ":event-type": "chunk",
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "event",
        },
        orjson.dumps(document),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """An exception message (`throttlingException`, `modelStreamErrorException`, ...)."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


def corrupt(frame: bytes) -> bytes:
    """The same frame with its message CRC broken."""
    return frame[:-4] + bytes(byte ^ 0xFF for byte in frame[-4:])
