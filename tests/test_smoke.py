from __future__ import annotations


def test_init_login_whoami(staff, cli):
    r = cli("whoami -o json")
    assert '"username": "anna"' in r.stdout
    assert '"clinic": "NORD"' in r.stdout
