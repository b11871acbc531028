"""`bling`: a sandbox (small profile, real 3/s limit), the Firestore emulator and a stored authorization."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.bling.helpers import reset_bling_state, store_pair


@pytest.fixture
def bling_server(firestore_env: Any, sandbox: Callable[..., Any]) -> Iterator[Any]:
    """The sandbox with BLING_* pointing at it, Firestore isolated, every shared.bling cache reset; not authorized."""
    server = sandbox("small")
    reset_bling_state()
    yield server
    reset_bling_state()


@pytest.fixture
def bling(bling_server: Any) -> Any:
    """bling_server with a valid token pair stored, and clean sandbox stats."""
    store_pair(bling_server)
    bling_server.reset_stats()
    return bling_server
