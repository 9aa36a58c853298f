"""Search ⇔ alert against a REAL OpenSearch node: for any query of the language, the engine's
search and its percolator find exactly what the alert matcher fires on.

The same drawn queries and corpus as tests/test_equality_property.py. The percolator is
given the drawn clock (percolate(now=…)), so a relative date's moving window is checked on
the relaxed stored query plus its re-check; a search resolves relative dates at the real
clock, and is compared with the matcher at that clock (the corpus is years old, and no
article sits within minutes of a window edge).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexers.engine import EngineIndex, make_client
from tests.test_engine import _drop
from tests.test_equality_property import CLOCK_HOURS, build_env, fired, property_settings, queries

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def engine_env(opensearch_url, tmp_path_factory):
    env = build_env(tmp_path_factory)
    loop = asyncio.new_event_loop()

    async def make() -> EngineIndex:  # the client is made inside the loop that will use it
        return EngineIndex(make_client("opensearch", [opensearch_url]),
                           prefix=f"rqeq-{uuid.uuid4().hex[:10]}", flavor="opensearch", replicas=0)

    ix = loop.run_until_complete(make())

    async def setup():
        await ix.ensure_setup()
        for i in range(0, len(env.articles), 200):
            await ix.index(env.articles[i:i + 200])
        await ix.refresh()
        assert await ix.count() == len(env.articles)

    loop.run_until_complete(setup())
    yield env, ix, loop
    loop.run_until_complete(_drop(ix))
    env.index.close_sync()
    loop.close()


def test_engine_search_and_percolator_equal_alerts_for_any_query(engine_env):
    env, ix, loop = engine_env
    sizes: list[int] = []

    @property_settings(100)
    @given(queries(env.words, env.phrases, env.sources, env.topics), st.sampled_from(CLOCK_HOURS))
    def check(query: str, hours: int):
        now = env.base + timedelta(hours=hours)

        async def run():
            await ix.put_subscriptions([("q", query)])
            percolated = await ix.percolate(env.articles, now=now)
            real = datetime.now(UTC)
            page = await ix.search(query, limit=10_000)
            return percolated, real, page

        percolated, real, page = loop.run_until_complete(run())
        want = fired(env, query, now)
        assert {aid for aid, subs in percolated.items() if "q" in subs} == want, query
        ids = {h.article.id for h in page.hits}
        assert ids == fired(env, query, real), query
        assert page.total == len(ids)
        sizes.append(len(want))

    check()
    assert sum(0 < s < len(env.articles) for s in sizes) > len(sizes) // 4


def test_percolated_relative_dates_move_with_the_clock(engine_env):
    """A stored subscription with date:24h fires for an article only while it is in the window."""
    env, ix, loop = engine_env
    art = next(a for a in env.articles if a.title == "اجتماع للناتو")
    seen = []
    for hours in [-1, 0, 23, 25, 24 * 7]:
        now = art.published + timedelta(hours=hours)

        async def run():
            await ix.put_subscriptions([("day", "الناتو date:24h"), ("not-day", "الناتو -date:24h")])
            return await ix.percolate([art], now=now)

        subs = loop.run_until_complete(run())[art.id]
        assert ("day" in subs) == (art.id in fired(env, "الناتو date:24h", now))
        assert ("not-day" in subs) == (art.id in fired(env, "الناتو -date:24h", now))
        seen.append("day" in subs)
    assert seen == [True, True, True, False, False]
