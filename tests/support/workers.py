"""A PostgreSQL database for each process of a parallel test run (pytest-xdist)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql


def own_database(url: str, worker: str) -> str:
    """`url` with its database name followed by `_<worker>` (`test_gw0`), made on the
    same server if it is missing. A URL that names no PostgreSQL server is kept."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return url
    name = f"{parts.path.lstrip('/')}_{worker}"
    connection = psycopg2.connect(urlunsplit(parts._replace(scheme="postgresql", query="")))
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()
    return urlunsplit(parts._replace(path=f"/{name}"))
