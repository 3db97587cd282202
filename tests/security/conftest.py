from __future__ import annotations

import pytest

from security import crypto, keystore
from tests.security.openbao import start_openbao


@pytest.fixture
def fresh_keystore():
    """Forget the configured provider and held keys before and after (tests that change KEYSTORE_URL)."""
    keystore.reset()
    crypto.reload()
    yield
    keystore.reset()
    crypto.reload()


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    yield from start_openbao(tmp_path_factory.mktemp("openbao"))
