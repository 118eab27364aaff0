"""An SQLite cache of model responses keyed by request hash, for deterministic requests only.

Greedy generations (temperature 0) and log-likelihood scores do not change between runs on the same model, so a
re-run, a resumed run or a run with a larger ``--limit`` pays only for what it has not asked before. Sampled
requests are never cached (their answers are meant to differ), and neither are failures. Each write is committed at
once (WAL journal), so a killed run loses nothing it had already received.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from evaluation.types import Request, Response

log = logging.getLogger(__name__)


class ResponseCache:
    """``get`` / ``put`` responses by :meth:`Request.cache_key`. Opened lazily; safe to share between threads and
    between processes (SQLite locking, WAL journal)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def open(self) -> ResponseCache:
        """Create the database file and table if needed."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)"
            )
            self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResponseCache:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, request: Request, model: str) -> Response | None:
        """The cached response, marked ``cached=True``, or ``None``. Non-deterministic requests always miss."""
        if not request.deterministic:
            return None
        conn = self.open()._conn
        assert conn is not None
        with self._lock:
            row = conn.execute("SELECT response FROM responses WHERE key = ?", (request.cache_key(model),)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        data = json.loads(row[0])
        data["cached"] = True
        data["latency_s"] = 0.0
        return Response.from_dict(data)

    def put(self, request: Request, model: str, response: Response) -> None:
        """Store a successful response of a deterministic request; anything else is ignored."""
        if not request.deterministic or response.error is not None:
            return
        conn = self.open()._conn
        assert conn is not None
        payload = json.dumps({**response.to_dict(), "cached": False}, ensure_ascii=False)
        with self._lock:
            conn.execute(
                "INSERT OR REPLACE INTO responses (key, model, response, created) VALUES (?, ?, ?, ?)",
                (request.cache_key(model), model, payload, time.time()),
            )

    def __len__(self) -> int:
        conn = self.open()._conn
        assert conn is not None
        with self._lock:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
