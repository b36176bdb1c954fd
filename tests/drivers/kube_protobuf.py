"""Just enough of Kubernetes' protobuf encoding to read the Secrets Helm stores its releases in.

client-go sends core objects as `application/vnd.kubernetes.protobuf`: the magic
`k8s\\0`, then a runtime.Unknown message {typeMeta, raw}, `raw` being the
object's own message. The fake API server decodes Secrets (Helm's release
storage) with this and answers in JSON, which the client also accepts.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone

MAGIC = b"k8s\x00"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes):
    """(field number, value) pairs: ints for varints, bytes for length-delimited; fixed widths skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _map_entry(data: bytes) -> tuple[str, bytes]:
    entry = dict(fields(data))
    return entry.get(1, b"").decode(), entry.get(2, b"")


def _time(data: bytes) -> str:
    seconds = dict(fields(data)).get(1, 0)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_meta(data: bytes) -> dict:
    # gogo-protobuf writes empty strings and zero times too: those mean "not set".
    meta: dict = {}
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for number, value in fields(data):
        if number in strings:
            if value:
                meta[strings[number]] = value.decode()
        elif number == 7:
            if value:
                meta["generation"] = value
        elif number == 8:
            if dict(fields(value)).get(1):
                meta["creationTimestamp"] = _time(value)
        elif number in (11, 12):
            key, item = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
    return meta


def secret(data: bytes) -> dict:
    obj: dict = {"apiVersion": "v1", "kind": "Secret"}
    for number, value in fields(data):
        if number == 1:
            obj["metadata"] = object_meta(value)
        elif number == 2:
            key, item = _map_entry(value)
            obj.setdefault("data", {})[key] = base64.b64encode(item).decode()
        elif number == 3:
            obj["type"] = value.decode()
        elif number == 4:
            key, item = _map_entry(value)
            obj.setdefault("stringData", {})[key] = item.decode()
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


DECODERS = {("v1", "Secret"): secret}


def decode(body: bytes) -> dict:
    """A protobuf request body -> the object as JSON would carry it; ValueError for what it cannot read."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf message")
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(envelope.get(1, b"")))
    api_version, kind = type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode()
    decoder = DECODERS.get((api_version, kind))
    if decoder is None:
        raise ValueError(f"no protobuf decoder for {api_version} {kind}")
    return decoder(envelope.get(2, b""))
