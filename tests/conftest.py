# Fixtures shared by every test module (a session-scoped fixture must be defined once, here,
# or each importing module gets its own — and would start a second OpenSearch node).
pytest_plugins = ["tests.feedserver", "tests.receivers", "tests.opensearch_node"]


def pytest_configure(config):
    """`pytest -m fuzz` is the long, nightly-style run of the hostile-input suites: the same
    tests with many more cases (CI runs them with their default counts)."""
    config.addinivalue_line("markers", "fuzz: hostile-input fuzz tests (pytest -m fuzz runs them long)")
    import os

    if "fuzz" in (config.option.markexpr or ""):
        os.environ.setdefault("RAQIB_FUZZ_EXAMPLES", "5000")
        os.environ.setdefault("RAQIB_FUZZ_SCALE", "20")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if "fuzz" in item.name or item.module.__name__.endswith("test_fuzz_feeds"):
            item.add_marker(pytest.mark.fuzz)
