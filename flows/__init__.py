"""Prefect flows: they compose and schedule `curation` library steps, nothing more.

Importing this package sets safe defaults for running offline (no telemetry, a patient
ephemeral-server start); values already in the environment win.
"""

import os

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ.setdefault(_name, _value)
