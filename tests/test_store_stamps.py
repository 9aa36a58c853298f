"""A subscription alerts on articles stored after it. "After" must mean "committed after": the
article's `stored` and the subscription's creation time are stamped inside the write lock, so a
write that waited for the lock is not stamped with the time it started waiting."""

import sqlite3
import threading
import time

from alerts import subscriptions as subs
from alerts.subscriptions import Subscription
from monitor.store import Store
from tests.helpers import make_article


def _hold_write_lock(path, seconds: float) -> threading.Thread:
    ready = threading.Event()

    def hold():
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    t = threading.Thread(target=hold)
    t.start()
    ready.wait()
    return t


def test_article_stored_stamp_is_taken_inside_the_write_lock(tmp_path):
    store = Store(tmp_path / "raqib.db")
    holder = _hold_write_lock(tmp_path / "raqib.db", 0.6)
    asked = time.time()
    store.ingest([make_article("الناتو", "نص")], [], {}, None)
    holder.join()
    (p,) = store.pending("matched")
    assert p.stored >= asked + 0.5  # not the moment ingest began waiting
    store.close()


def test_subscription_created_stamp_is_taken_inside_the_write_lock(tmp_path):
    store = Store(tmp_path / "raqib.db")
    holder = _hold_write_lock(tmp_path / "raqib.db", 0.6)
    asked = time.time()
    subs.save(store, Subscription("s1", "s1", "الناتو", ("log",)))
    holder.join()
    (s,) = subs.load_all(store)
    assert s.created >= asked + 0.5
    # an update keeps the first stamp
    subs.save(store, Subscription("s1", "renamed", "الناتو", ("log",)))
    (again,) = subs.load_all(store)
    assert again.created == s.created and again.name == "renamed"
    store.close()


def test_a_partly_lost_lease_lets_go_of_the_rest_at_once(tmp_path):
    """A digest whose rows were partly taken over is not sent; the rows still leased to us go
    back to the pool now rather than after a renewed lease idles out."""
    store = Store(tmp_path / "raqib.db")
    now = time.time()
    rows = [(f"d{i}", "s1", f"a{i}", "log", "{}") for i in range(3)]
    assert store.enqueue_alerts(rows, [], now) == 3
    mine = [r[0] for r in store.claim_outbox("me", now, 60.0)]
    assert len(mine) == 3
    # another process took one row over after our lease lapsed
    stolen = store.claim_outbox("other", now + 61, 60.0, limit=1)
    assert len(stolen) == 1
    assert store.renew_lease(mine, "me", now + 200) is False
    # the two rows that were still ours are free for anyone now, not held until now + 200
    free = [r[0] for r in store.claim_outbox("third", now + 62, 60.0)]
    assert sorted(free) == sorted(set(mine) - {stolen[0][0]})
    store.close()
