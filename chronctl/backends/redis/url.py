"""The Redis URL forms: one server, Sentinel, Cluster; what `connect` needs from them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import UsageError


def parse_redis_url(url: str) -> dict[str, Any]:
    """The URL forms of SPEC §3; returns what connect() needs (never logged)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise UsageError(
                "a sentinel URL names the master: redis+sentinel://host:26379/mymaster/0"
            )
        hosts = []
        for item in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = item.partition(":")
            hosts.append((host, int(port or 26379)))
        return {
            "sentinel": hosts,
            "service": path[0],
            "db": int(path[1]) if len(path) > 1 else 0,
            "password": unquote(parts.password) if parts.password else None,
            "username": unquote(parts.username) if parts.username else None,
            "prefix": query.get("prefix"),
        }
    if "," in parts.netloc or query.get("cluster", "").lower() in ("1", "yes", "true"):
        # Redis Cluster: `redis://[user:pass@]h1:7000,h2:7001/0`, or one seed node with
        # `?cluster=yes`. Every key carries the prefix's hash tag, so all live in one slot.
        db = parts.path.strip("/") or "0"
        if db != "0":
            raise UsageError(
                f"a Redis Cluster has only database 0, not {db}: "
                "use ?prefix= to keep applications apart"
            )
        nodes = []
        for item in parts.netloc.rpartition("@")[2].split(","):
            if item.startswith("["):  # [::1]:7000
                host, _, port = item[1:].partition("]")
                port = port.lstrip(":")
            else:
                host, _, port = item.partition(":")
            try:
                nodes.append((host, int(port or 6379)))
            except ValueError:
                raise UsageError(f"bad Redis Cluster node '{item}'") from None
        return {
            "cluster": nodes,
            "tls": parts.scheme == "rediss",
            "password": unquote(parts.password) if parts.password else None,
            "username": unquote(parts.username) if parts.username else None,
            "prefix": query.get("prefix"),
        }
    return {"url": url.split("?", 1)[0], "prefix": query.get("prefix")}
