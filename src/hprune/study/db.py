"""The study file: schema, connections and every query (sqlite3 parameters only).

WAL mode with synchronous=FULL: a rating is on disk when its COMMIT returns, so
a response sent after the commit is never lost to a kill or a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS methods (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, source TEXT NOT NULL, model TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY, position INTEGER NOT NULL UNIQUE, prompt TEXT NOT NULL, seed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    method_id INTEGER NOT NULL REFERENCES methods(id), png BLOB NOT NULL, UNIQUE (prompt_id, method_id));
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, plan TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS picks (
    participant_id INTEGER NOT NULL REFERENCES participants(id), prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    image_id TEXT NOT NULL REFERENCES images(id), created_at REAL NOT NULL, PRIMARY KEY (participant_id, prompt_id));
CREATE TABLE IF NOT EXISTS ratings (
    participant_id INTEGER NOT NULL REFERENCES participants(id), image_id TEXT NOT NULL REFERENCES images(id),
    text_alignment INTEGER NOT NULL CHECK (text_alignment BETWEEN 0 AND 5),
    image_quality INTEGER NOT NULL CHECK (image_quality BETWEEN 0 AND 5),
    created_at REAL NOT NULL, PRIMARY KEY (participant_id, image_id));
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode; writers open their own `BEGIN IMMEDIATE`."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def check_study(path: str | Path) -> None:
    """Raise HpruneError unless `path` is a study file that `hprune study create` made."""
    from hprune.core.errors import HpruneError

    if not Path(path).is_file():
        raise HpruneError(f"{path} does not exist; pass a file made by `hprune study create`.")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'methods'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        found = None
    if not found:
        raise HpruneError(f"{path} is not a study file; pass a file made by `hprune study create`.")


# Writers of one process queue on this lock: a thread waiting here wakes the moment the
# previous commit ends, where SQLite's own busy handler sleeps in steps of up to 100 ms.
# Across processes (serve --workers N) the busy timeout still orders them.
WRITE_LOCK = threading.Lock()


class Transaction:
    """`with Transaction(conn):` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        WRITE_LOCK.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            WRITE_LOCK.release()
            raise
        return self.conn

    def __exit__(self, kind, err, tb):
        try:
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            WRITE_LOCK.release()
        return False


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def set_meta(conn, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def get_meta(conn, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else default


def add_method(conn, name: str, source: str, model: str) -> int:
    return conn.execute("INSERT INTO methods (name, source, model) VALUES (?, ?, ?)", (name, source, model)).lastrowid


def add_prompt(conn, position: int, prompt: str, seed: int) -> int:
    return conn.execute("INSERT INTO prompts (position, prompt, seed) VALUES (?, ?, ?)",
                        (position, prompt, seed)).lastrowid


def add_image(conn, image_id: str, prompt_id: int, method_id: int, png: bytes) -> None:
    conn.execute("INSERT INTO images (id, prompt_id, method_id, png) VALUES (?, ?, ?, ?)",
                 (image_id, prompt_id, method_id, png))


def method_names(conn) -> list[str]:
    return [r["name"] for r in conn.execute("SELECT name FROM methods ORDER BY id")]


def images_by_prompt(conn) -> dict[int, list[str]]:
    """prompt id -> its image ids (one per method)."""
    out: dict[int, list[str]] = {}
    for row in conn.execute("SELECT prompt_id, id FROM images ORDER BY prompt_id, method_id"):
        out.setdefault(row["prompt_id"], []).append(row["id"])
    return out


def prompt(conn, prompt_id: int) -> sqlite3.Row:
    return conn.execute("SELECT id, position, prompt, seed FROM prompts WHERE id = ?", (prompt_id,)).fetchone()


def image_png(conn, image_id: str) -> bytes | None:
    row = conn.execute("SELECT png FROM images WHERE id = ?", (image_id,)).fetchone()
    return row["png"] if row else None


def add_participant(conn, token: str, plan: str, now: float) -> None:
    conn.execute("INSERT INTO participants (token, plan, created_at) VALUES (?, ?, ?)", (token, plan, now))


def participant(conn, token: str) -> sqlite3.Row | None:
    return conn.execute("SELECT id, token, plan, progress, finished_at FROM participants WHERE token = ?",
                        (token,)).fetchone()


def advance(conn, participant_id: int, expected: int, last: bool, now: float) -> bool:
    """Move a participant from step `expected` to the next; False when another request got there first."""
    cur = conn.execute("UPDATE participants SET progress = progress + 1, finished_at = ? "
                       "WHERE id = ? AND progress = ?", (now if last else None, participant_id, expected))
    return cur.rowcount == 1


def add_pick(conn, participant_id: int, prompt_id: int, image_id: str, now: float) -> None:
    conn.execute("INSERT INTO picks (participant_id, prompt_id, image_id, created_at) VALUES (?, ?, ?, ?)",
                 (participant_id, prompt_id, image_id, now))


def add_rating(conn, participant_id: int, image_id: str, text_alignment: int, image_quality: int, now: float) -> None:
    conn.execute("INSERT INTO ratings (participant_id, image_id, text_alignment, image_quality, created_at) "
                 "VALUES (?, ?, ?, ?, ?)", (participant_id, image_id, text_alignment, image_quality, now))


RATING_ROWS = """
SELECT r.participant_id AS participant, p.position AS prompt_index, p.prompt AS prompt, p.seed AS seed,
       m.name AS method, r.image_id AS image_id, r.text_alignment AS text_alignment,
       r.image_quality AS image_quality, r.created_at AS created_at
FROM ratings r JOIN images i ON i.id = r.image_id JOIN prompts p ON p.id = i.prompt_id
JOIN methods m ON m.id = i.method_id ORDER BY r.created_at, r.participant_id"""

PICK_ROWS = """
SELECT k.participant_id AS participant, p.position AS prompt_index, p.prompt AS prompt, p.seed AS seed,
       m.name AS method, k.image_id AS image_id, k.created_at AS created_at
FROM picks k JOIN images i ON i.id = k.image_id JOIN prompts p ON p.id = k.prompt_id
JOIN methods m ON m.id = i.method_id ORDER BY k.created_at, k.participant_id"""


def rating_rows(conn) -> list[sqlite3.Row]:
    return conn.execute(RATING_ROWS).fetchall()


def pick_rows(conn) -> list[sqlite3.Row]:
    return conn.execute(PICK_ROWS).fetchall()


def participant_counts(conn) -> tuple[int, int]:
    """(participants who started, participants who finished)."""
    row = conn.execute("SELECT COUNT(*) AS started, COUNT(finished_at) AS finished FROM participants").fetchone()
    return row["started"], row["finished"]
