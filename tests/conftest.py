# Fixtures shared by every test module (a session-scoped fixture must be defined once, here,
# or each importing module gets its own — and would start a second OpenSearch node).
pytest_plugins = ["tests.feedserver", "tests.receivers", "tests.opensearch_node"]
