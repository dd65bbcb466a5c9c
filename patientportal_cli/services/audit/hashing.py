"""The audit log's hash and signature formulas (no database): what an event's hash,
content hash and a checkpoint's signature are computed over."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from patientportal_cli.db.models import AuditEvent

encode_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def at_text(at: datetime) -> str:
    """The time as hashed: UTC, 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLite's stored text)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S.%f}"


def content_hash(salt: str, target: str, details: str) -> str:
    return hashlib.sha256(f"{salt}|{len(target)}:{target}|{details}".encode()).hexdigest()


def digest_v2(
    chain: str, seq: int, at: str, actor: str, action: str, content: str, prev: str
) -> str:
    """Length prefixes keep the text unambiguous (an actor may contain '|')."""
    payload = (
        f"2|{len(chain)}:{chain}|{seq}|{at}|{len(actor)}:{actor}|{len(action)}:{action}"
        f"|{content}|{prev}"
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def digest_v1(event: AuditEvent) -> str:
    """The hash of events written before schema 0005 (one global chain)."""
    payload = json.dumps(
        [
            event.at.isoformat(),
            event.actor,
            event.clinic,
            event.action,
            event.target,
            event.details,
            event.prev_hash,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def digest(event: AuditEvent) -> str:
    """The hash ``event`` should carry (version 2 with its salt, or version 1)."""
    if event.version == 1:
        return digest_v1(event)
    content = (
        content_hash(event.salt, event.target, event.details)
        if event.salt is not None
        else event.content_hash or ""
    )
    return digest_v2(
        event.chain, event.seq, at_text(event.at), event.actor, event.action, content,
        event.prev_hash,
    )  # fmt: skip


def digest_v1_fields(at: str, actor: str, clinic: str | None, action: str, target: str,
                     details: str, prev: str) -> str:  # fmt: skip
    """``digest_v1`` from the raw fields ``verify`` reads (``at`` as UTC text)."""
    iso = datetime.fromisoformat(at).replace(tzinfo=UTC).isoformat()
    payload = json.dumps(
        [iso, actor, clinic, action, target, details, prev],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def key_id(key: bytes) -> str:
    """Names a key without revealing it (16 hex digits)."""
    return hashlib.sha256(b"patientportal-audit-key-id|" + key).hexdigest()[:16]


def sign(key: bytes, chain: str, seq: int, hash_: str, created_at: str, created_by: str) -> str:
    message = (
        f"patientportal-audit-checkpoint|{len(chain)}:{chain}|{seq}|{hash_}|{created_at}"
        f"|{len(created_by)}:{created_by}"
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


PRUNE = "prune"  # audit_checkpoint.kind of a prune checkpoint (the chain's floor)


def sign_prune(
    key: bytes, chain: str, seq: int, hash_: str, created_at: str, created_by: str, cutoff: str
) -> str:
    """A prune checkpoint's signature: its own prefix, so an ordinary checkpoint's
    signature never passes for a floor (which would hide deleted old events)."""
    message = (
        f"patientportal-audit-prune|{len(chain)}:{chain}|{seq}|{hash_}|{created_at}"
        f"|{len(created_by)}:{created_by}|{cutoff}"
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
