"""alerts.yaml's subscriptions are synced at start in one transaction, and only what changed
is written: an unchanged file does not bump the change counter (which would rebuild the
matcher), a removed one goes, a CLI one stays."""

from alerts import subscriptions as subs
from alerts.subscriptions import Subscription
from monitor.config import SubscriptionConfig
from monitor.store import Store


def _cfg(i: int, query: str = "الناتو") -> SubscriptionConfig:
    return SubscriptionConfig(id=f"f{i}", query=f"{query} {i}", channels=("log",))


def test_sync_writes_only_what_changed(tmp_path):
    store = Store(tmp_path / "raqib.db")
    subs.save(store, Subscription("mine", "mine", "كورسك", ("log",)))
    configured = tuple(_cfg(i) for i in range(2000))
    subs.sync_from_config(store, configured)
    v1 = subs.version(store)
    assert len(subs.load_all(store)) == 2001
    created = {s.id: s.created for s in subs.load_all(store)}

    subs.sync_from_config(store, configured)  # the same file again: nothing written
    assert subs.version(store) == v1

    edited = (*configured[:1999], _cfg(1999, "بودابست"))[1:]  # f0 removed, f1999 edited
    subs.sync_from_config(store, edited)
    after = {s.id: s for s in subs.load_all(store)}
    assert subs.version(store) != v1
    assert "f0" not in after and "mine" in after and len(after) == 2000
    assert after["f1999"].query == "بودابست 1999"
    assert after["f1999"].created == created["f1999"]  # an edit keeps the creation time
    store.close()
