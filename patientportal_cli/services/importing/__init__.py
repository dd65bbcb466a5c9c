"""Bulk import of patients: ``reader`` (files), ``validate`` (row values), ``plan``
(phase one: check and classify), ``apply`` (phase two: batched writes), ``bulk``
(driver-level multi-row writes)."""

# Rows per transaction in phase two: the one default of ``plan.Plan``, ``plan.make_plan``
# and the hidden ``patient import --batch-size``; here, so the CLI can name it without
# importing the import machinery at start-up.
BATCH_SIZE = 20_000
