"""The app's own ASGI middleware, called directly."""

from __future__ import annotations

import asyncio

from movierec.service.app import TakeTurns


def test_take_turns_lets_the_loop_run_before_each_request() -> None:
    """Work the loop already holds (reading the next sockets) runs before the request is handled;
    other scope types (lifespan) pass straight through."""
    order: list[str] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        order.append(scope["type"])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "waiting")
        await TakeTurns(app)({"type": "lifespan"}, None, None)
        await TakeTurns(app)({"type": "http"}, None, None)

    asyncio.run(main())
    assert order == ["lifespan", "waiting", "http"]
