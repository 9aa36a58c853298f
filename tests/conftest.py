pytest_plugins = ["tests.feedserver", "tests.receivers"]
