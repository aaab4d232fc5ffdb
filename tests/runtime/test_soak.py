from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import asyncjobs as aj

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
N = 20_000


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_twenty_thousand_noops_through_sqlite(tmp_path: Path) -> None:
    rt = aj.Runtime(f"sqlite:///{tmp_path}/soak.db?synchronous=normal", workers=64)

    @rt.task
    async def noop(i: int) -> int:
        return i

    async with rt:

        async def produce(start: int) -> None:
            for i in range(start, N, 20):
                await rt.once(noop, i)

        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                for start in range(20):
                    tg.start_soon(produce, start)
            while await rt.executions.count(status="completed") < N:
                await anyio.sleep(0.2)
        assert await rt.executions.count() == N
        assert await rt.jobs.count(status="finished") == N
        page = await rt.executions.list(page_size=1000)
        for ex in page.items:
            history = [t.status.value for t in await rt.store.history(ex.id)]
            assert history == ["queued", "running", "completed"], (ex.id, history)
