"""The append-only audit log: one hash chain per clinic, anchored by signed checkpoints.

Chains. Every event belongs to one chain: its clinic's code, or "" (the no-clinic chain:
staff logins, failed logins, locks, staff accounts). ``seq`` numbers a chain's events
from 1 without gaps, so a deleted event is reported as missing by chain and number. A
writer locks only its chain's row in ``audit_head`` (``INSERT ... ON CONFLICT DO UPDATE
... RETURNING``: one statement creates or locks it and returns the chain's newest seq and
hash), so writers at different clinics never wait on each other; on SQLite every write
transaction is exclusive anyway.

Hashing (version 2, erasable). Personal data lives only in ``target`` and ``details``.
They are covered through ``content_hash = sha256(salt | len(target):target | details)``
with a random 16-byte salt per event, and the event's hash covers the version, chain,
seq, time, actor, action, content_hash and the previous event's hash (a length-prefixed
text, cheap to build: see ``hashing.digest_v2``). Erasing an event (``redact``) blanks target,
details and salt and keeps content_hash: the chain still verifies, and without the salt
nobody can confirm a guessed CPR number against the stored content_hash.

Version 1: events written before schema 0005 were one global chain in id order, hashed
with ``hashing.digest_v1`` over all fields. The migration numbered them into their clinic's
chain and set each chain's head to its last version-1 event, so version-2 events
continue those chains; ``verify`` checks version-1 events with the old digest and their
global order.

Anchoring. A chain alone cannot show that its newest events were deleted, or that the
whole chain was recomputed. ``checkpoint`` stores (chain, seq, hash) signed with
HMAC-SHA256 under the audit key, which is kept outside the database (OS keyring or
environment); ``verify`` checks the signatures, that each anchored event still exists
with that hash, and resumes from the newest good anchor (incremental). Anchors also come
from an exported checkpoint file and from the heads this machine verified before.

The package: ``hashing`` (the formulas), ``chains`` (recording and reading events),
``redaction`` (erasure), ``verification`` (``verify`` and its anchors) and
``checkpoints`` (signed checkpoints and their file). Callers use the names below, as
``audit.record(...)``.
"""

# AuditEvent and _digest_v1 are here for what reached them through the old module
# (benchmarks/scale.py; a test that forges version-1 events)
from patientportal_cli.db.models import AuditEvent
from patientportal_cli.services.audit.chains import (
    CHAIN_COLUMNS,
    GENESIS,
    NO_CLINIC,
    all_chains,
    chain,
    chain_of,
    events,
    label,
    record,
    record_many,
)
from patientportal_cli.services.audit.checkpoints import checkpoint, checkpoint_file_text
from patientportal_cli.services.audit.hashing import (
    at_text,
    content_hash,
    digest,
    encode_json_string,
    key_id,
    sign,
)
from patientportal_cli.services.audit.hashing import digest_v1 as _digest_v1
from patientportal_cli.services.audit.redaction import ERASED_DETAILS, ERASED_TARGET, redact
from patientportal_cli.services.audit.verification import (
    Anchor,
    ChainResult,
    Report,
    file_anchors,
    verify,
)

__all__ = [
    "CHAIN_COLUMNS",
    "ERASED_DETAILS",
    "ERASED_TARGET",
    "GENESIS",
    "NO_CLINIC",
    "Anchor",
    "AuditEvent",
    "ChainResult",
    "Report",
    "_digest_v1",
    "all_chains",
    "at_text",
    "chain",
    "chain_of",
    "checkpoint",
    "checkpoint_file_text",
    "content_hash",
    "digest",
    "encode_json_string",
    "events",
    "file_anchors",
    "key_id",
    "label",
    "record",
    "record_many",
    "redact",
    "sign",
    "verify",
]
