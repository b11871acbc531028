"""The local stack with a two-company sandbox (a child process) and the real auth function: the company named at
Bling's consent is the one whose code is exchanged, and the other company's authorization is untouched."""
from __future__ import annotations

from local.stack.sandbox import AccountSpec


def test_the_stack_connects_the_company_that_approves(local_stack_factory):
    stack = local_stack_factory(functions=["auth"], sandbox_accounts=[AccountSpec("loja-a", "small", seed=1),
                                                                      AccountSpec("loja-b", "small", seed=2)])
    assert stack.sandbox.account_names() == ["loja-a", "loja-b"]
    status = stack.authorize(account="loja-b")
    assert status["token_stored"] is True and status["reauth_required"] is False
    by_account = stack.sandbox.stats()["accounts"]
    # loja-b's user approved, and the auth function exchanged loja-b's code: one authorize and one token call each.
    assert (by_account["loja-b"]["authorize_calls"], by_account["loja-b"]["token_calls"]) == (1, 1)
    assert (by_account["loja-a"]["authorize_calls"], by_account["loja-a"]["token_calls"]) == (0, 0)
