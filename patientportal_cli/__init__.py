"""patientportal-cli: administration of patient logins on the Patientportal."""

__version__ = "0.1.0"
