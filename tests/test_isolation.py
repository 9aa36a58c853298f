"""Failure isolation: one feed's failure — bad body, crashed or stuck parser — stays its own."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import monitor
import alerts
import indexers
from monitor.errors import RaqibError


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _sample_args(cls):
    values = {"int": 7, "float": 1.5, "int | None": 7, "float | None": 1.5}
    args = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        ann = str(p.annotation)
        if ann.startswith(("Mapping", "dict")):
            args.append({"k": "v"})
        elif ann.startswith(("Sequence", "tuple", "list", "Iterable")):
            args.append(["a", "b"])
        else:
            args.append(values.get(ann, f"{p.name}-value"))
    return args


def test_every_raqib_error_survives_pickling():
    # Import every module so subclasses defined anywhere in the project are covered.
    for pkg in (monitor, alerts, indexers):
        for mod in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            try:
                importlib.import_module(mod.name)
            except ImportError:  # an optional backend's client is not installed
                pass
    classes = [RaqibError, *_all_subclasses(RaqibError)]
    assert {"ParseError", "FetchError", "RetryLater", "QueryError"} <= {c.__name__ for c in classes}
    for cls in classes:
        e = cls(*_sample_args(cls))
        e.extra = ["kept"]
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is cls
        assert str(back) == str(e) and back.args == e.args
        assert back.__dict__ == e.__dict__, cls
