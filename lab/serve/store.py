"""The lab server's state in SQLite (stdlib sqlite3, WAL mode): the class, its users with their
tokens' hashes, every lab with its state and last known picture, and the events each lab told. One
connection, guarded by a lock: the server's own requests and its supervisor share it, and a
statement here takes microseconds. Results folders stay ordinary tcplab folders on disk."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labs (
  id TEXT PRIMARY KEY, student TEXT NOT NULL, exercise TEXT NOT NULL, mode TEXT NOT NULL,
  state TEXT NOT NULL, sets TEXT NOT NULL, variant TEXT NOT NULL, lab TEXT NOT NULL, backend TEXT NOT NULL,
  created REAL NOT NULL, updated REAL NOT NULL, ended REAL, seq INTEGER NOT NULL,
  worker_pid INTEGER, worker_start INTEGER, folder TEXT, stage TEXT NOT NULL DEFAULT '', error TEXT,
  verdict TEXT, picture TEXT NOT NULL DEFAULT '{}', wire TEXT, deleted INTEGER NOT NULL DEFAULT 0,
  last_input REAL, last_packet REAL, events_read INTEGER NOT NULL DEFAULT 0, retry_of TEXT);
CREATE INDEX IF NOT EXISTS labs_student ON labs (student);
CREATE TABLE IF NOT EXISTS events (
  lab TEXT NOT NULL, n INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
  PRIMARY KEY (lab, n));
"""

ACTIVE = ("queued", "starting", "running", "finishing")
FINAL = ("done", "failed")
JSON_COLUMNS = ("sets", "variant", "verdict", "picture", "wire")
# What a list of labs reads: all but the live view of the wire, the one large column (up to 100 KB a lab).
BRIEF = ("id, student, exercise, mode, state, sets, variant, lab, backend, created, updated, ended, seq, worker_pid, "
         "worker_start, folder, stage, error, verdict, picture, deleted, last_input, last_packet, events_read, retry_of")


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _do(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._lock:
            self._db.execute(sql, tuple(args))

    # --- meta and users ---------------------------------------------------------------------------

    def meta(self, key: str) -> Optional[str]:
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._do("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def users(self) -> list[sqlite3.Row]:
        return self._all("SELECT name, role, token_hash FROM users ORDER BY role, name")

    def set_user(self, name: str, role: str, token_hash: str) -> None:
        self._do("INSERT INTO users (name, role, token_hash) VALUES (?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET role = excluded.role, token_hash = excluded.token_hash", (name, role, token_hash))

    def drop_users_except(self, names: Iterable[str]) -> None:
        keep = list(names)
        self._do(f"DELETE FROM users WHERE name NOT IN ({','.join('?' * len(keep))})", keep)

    # --- labs -------------------------------------------------------------------------------------

    def add_lab(self, lab: dict[str, Any]) -> None:
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM labs").fetchone()[0]
            row = {**lab, "seq": seq}
            for k in JSON_COLUMNS:
                if k in row:
                    row[k] = json.dumps(row[k])
            self._db.execute(f"INSERT INTO labs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def update(self, lab_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields.setdefault("updated", time.time())
        values = [json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()]
        self._do(f"UPDATE labs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, lab_id])

    def lab(self, lab_id: str) -> Optional[dict[str, Any]]:
        rows = self._all("SELECT * FROM labs WHERE id = ?", (lab_id,))
        return _row(rows[0]) if rows else None

    def labs(self, student: Optional[str] = None, states: Optional[Iterable[str]] = None, deleted: bool = True) -> list[dict[str, Any]]:
        """Labs, newest first, without their wire (`lab` gives one whole)."""
        where, args = [], []
        if student is not None:
            where.append("student = ?")
            args.append(student)
        if states is not None:
            s = list(states)
            where.append(f"state IN ({','.join('?' * len(s))})")
            args += s
        if not deleted:
            where.append("deleted = 0")
        sql = f"SELECT {BRIEF} FROM labs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq DESC"
        return [_row(r) for r in self._all(sql, args)]

    # --- events -----------------------------------------------------------------------------------

    def add_events(self, lab_id: str, first: int, events: list[dict[str, Any]]) -> None:
        """Events numbered from `first` (their line in the worker's file): a re-read after a restart adds none twice."""
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO events (lab, n, ts, kind, text) VALUES (?, ?, ?, ?, ?)",
                                 [(lab_id, first + i, float(e.get("ts", 0)), str(e.get("kind", "progress")), str(e.get("text", "")))
                                  for i, e in enumerate(events)])
            self._db.execute("UPDATE labs SET events_read = ? WHERE id = ?", (first + len(events), lab_id))

    def events(self, lab_id: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT ts, kind, text FROM (SELECT * FROM events WHERE lab = ? ORDER BY n DESC LIMIT ?) ORDER BY n",
                         (lab_id, limit))
        return [dict(r) for r in rows]


def _row(r: sqlite3.Row) -> dict[str, Any]:
    out = dict(r)
    for k in JSON_COLUMNS:
        if out.get(k) is not None:
            out[k] = json.loads(out[k])
    return out
