"""Bulk import of patients: ``reader`` (files), ``validate`` (row values), ``plan``
(phase one: check and classify), ``apply`` (phase two: batched writes), ``bulk``
(driver-level multi-row writes)."""
