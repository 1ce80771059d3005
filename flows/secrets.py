"""Secrets named in configs ('env:VAR' or 'prefect-secret:BLOCK'), read at the last moment, never logged."""

from __future__ import annotations

from prefect.blocks.system import Secret

from curation.config import env_secret

SECRET_PREFIX = "prefect-secret:"


def read_secret(reference: str, field: str) -> str:
    if reference.startswith(SECRET_PREFIX):
        return Secret.load(reference.removeprefix(SECRET_PREFIX)).get()
    return env_secret(reference, field)
