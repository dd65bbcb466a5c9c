"""Helpers shared by the tests (no tests and no fixtures here; fixtures are in conftest.py).

- ``cli``: running ``patientportal`` in-process, the staff helper, reading renderings
- ``db``: the test PostgreSQL server, sessions and queries on the database a test uses
- ``mail``: the mail as delivered to the default Maildir, and the codes in it
- ``people``: setting clinics, staff and patients up through the CLI
- ``services``: calling the services directly, as a staff member
- ``portal``: what a patient's two-factor login prints
- ``csv_files``: import files as spreadsheets write them
- ``memory_keyring``: an in-memory keyring backend
- ``smtp``: a real SMTP server on loopback
"""
