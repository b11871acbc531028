"""The local stack authorizes as the operator (ADR 007): a random admin key per stack, given to the auth function
only, used by stack.authorize() through the key form, the cookie-bound callback and the replace confirmation."""
from __future__ import annotations

import os
import stat

import pytest
import requests

from local.stack import LocalStack


def test_the_stack_authorizes_with_its_own_random_admin_key(local_stack_factory):
    stack = local_stack_factory(functions=["auth"])
    key_file = stack.run_dir / "auth-admin-key"

    assert stack.auth_admin_key != LocalStack().auth_admin_key and len(stack.auth_admin_key) >= 32
    assert key_file.read_text().strip() == stack.auth_admin_key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stack.functions["auth"].extra_env["AUTH_ADMIN_KEY"] == stack.auth_admin_key
    assert "AUTH_ADMIN_KEY" not in stack.function_process_env()  # the other functions never see it
    assert requests.get(stack.auth_url + "/status", timeout=10).status_code == 401

    first = stack.authorize()
    assert first["token_stored"] is True and first["reauth_required"] is False and first["version"] == 1
    with pytest.raises(RuntimeError, match="replace=True"):
        stack.authorize()  # a working authorization is not replaced without the confirmation
    assert stack.authorize(replace=True)["version"] == 2
    assert stack.sandbox.stats()["token_calls"] == 2
    assert stack.auth_admin_key not in stack.log_text()
