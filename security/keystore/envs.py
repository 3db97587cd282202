"""``env://``: secrets from this process's environment (a container's injected variables)."""

from __future__ import annotations

import os

from security.keystore import MASTER_KEYS, Provider, SecretNotFound

MASTER_KEYS_VARIABLE = "AGENCY_MASTER_KEYS"
SECRET_PREFIX = "AGENCY_SECRET_"  # noqa: S105 - a variable name prefix, not a secret


def variable_for(name: str) -> str:
    if name == MASTER_KEYS:
        return MASTER_KEYS_VARIABLE
    return SECRET_PREFIX + name.upper().replace(".", "_").replace("-", "_")


class EnvProvider(Provider):
    scheme = "env"
    location = "environment"

    def read(self, name: str) -> str:
        variable = variable_for(name)
        value = os.environ.get(variable, "")
        if not value:
            raise SecretNotFound(name, f"environment variable {variable} is not set")
        return value
