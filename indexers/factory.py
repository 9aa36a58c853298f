"""Picks the index backend named in raqib.yaml (`index.backend`)."""

from __future__ import annotations

from pathlib import Path

from indexers.base import ArticleIndex
from monitor.config import Config
from monitor.errors import ConfigError


def make_index(config: Config, db_path: Path) -> ArticleIndex:
    backend = config.settings.index.backend
    if backend == "sqlite":
        from indexers.sqlite import SqliteIndex

        return SqliteIndex(db_path)
    raise ConfigError(f"{config.config_dir / 'raqib.yaml'}, index.backend: the {backend} engine "
                      "is not available in this version yet; use sqlite")
