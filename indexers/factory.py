"""Picks the index backend named in raqib.yaml (`index.backend`)."""

from __future__ import annotations

from pathlib import Path

from indexers.base import ArticleIndex
from monitor.config import Config


def make_index(config: Config, db_path: Path) -> ArticleIndex:
    cfg = config.settings.index
    if cfg.backend == "sqlite":  # the embedded default: a tantivy index beside the store
        from indexers.tantivy_index import TantivyIndex

        return TantivyIndex(db_path)
    from indexers.engine import EngineIndex, make_client

    client = make_client(cfg.backend, cfg.urls, cfg.verify_certs, cfg.ca_certs)
    return EngineIndex(client, prefix=cfg.index_prefix, flavor=cfg.backend,
                       shards=cfg.shards, replicas=cfg.replicas)
