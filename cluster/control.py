"""The control plane: what replicas share besides files, behind one synchronous interface.

Canary snapshots (compare-and-set on a version, transitions appended in the same
transaction), per-replica traffic counters, a leader lease and a replica registry. Every
method is one short transaction on the database `open_control` names, safe to call from many
threads (callers on an event loop use asyncio.to_thread), and raises `ControlUnavailable`,
never a driver's exception, when the database cannot answer. Values are JSON-able dicts: each
stage serialises its own types. Times are epoch seconds on the database's clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cluster.database import ControlUnavailable, Database, Transaction
from cluster.urls import parse_control_url

__all__ = ["ControlPlane", "ControlUnavailable", "Lease", "Versioned", "open_control"]

_NO_LIMIT = 2**62


@dataclass(frozen=True)
class Versioned:
    """A route's canary snapshot with the version a compare-and-set compares."""

    version: int
    snapshot: dict[str, Any]
    updated_at: float


class Lease(NamedTuple):
    """Who holds a lease, and until when (database clock)."""

    holder: str
    expires_at: float


def open_control(url: str, replica: str) -> ControlPlane:
    """Open the control plane at `url` (`sqlite:///abs/path`, a plain path, or
    `postgresql://user:password@host:port/db`) for `replica`, creating or upgrading its
    tables. Raises ControlUnavailable when the database cannot be reached, ValueError for a
    URL of another kind; neither message holds the password."""
    control = ControlPlane(Database(parse_control_url(url), f"apprentice {replica}"), replica)
    control.clock()  # connect (and migrate) now, so a wrong URL fails at start, not later
    return control


class ControlPlane:
    """The shared state of a replica set. Made by `open_control`."""

    def __init__(self, db: Database, replica: str) -> None:
        self._db = db
        self.replica = replica

    def __repr__(self) -> str:
        return f"ControlPlane({self._db.url.shown!r}, replica={self.replica!r})"

    @property
    def url(self) -> str:
        """The database's URL with its password masked."""
        return self._db.url.shown

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgres`."""
        return self._db.dialect.name

    def close(self) -> None:
        """Close the connection; later calls raise ControlUnavailable."""
        self._db.close()

    def clock(self) -> float:
        """The database's time (epoch seconds): what `since`, leases and ages are judged by."""
        return float(self._db.read("SELECT {now}")[0][0])

    # --- canary snapshots -------------------------------------------------------------

    def versions(self) -> dict[str, int]:
        """Each route's snapshot version: cheap enough to poll every half second."""
        rows = self._db.read("SELECT route, version FROM canary_snapshots")
        return {route: int(version) for route, version in rows}

    def snapshots(self) -> dict[str, Versioned]:
        """Every route's snapshot with its version."""
        rows = self._db.read("SELECT route, version, snapshot, updated_at FROM canary_snapshots")
        return {
            route: Versioned(int(version), json.loads(snapshot), float(updated_at))
            for route, version, snapshot, updated_at in rows
        }

    def write_snapshot(
        self,
        route: str,
        expected_version: int | None,
        snapshot: Mapping[str, Any],
        transitions: Sequence[Mapping[str, Any]] = (),
    ) -> int | None:
        """Replace `route`'s snapshot if its version is still `expected_version` (None or 0:
        the route has none yet) and append `transitions`, in one transaction. Returns the new
        version, or None when another writer got there first (then nothing is written)."""
        if expected_version is not None and expected_version < 0:
            raise ValueError(f"expected_version must be None or >= 0, not {expected_version}")
        body = json.dumps(snapshot)
        made = [json.dumps(t) for t in transitions]

        def cas(tx: Transaction) -> int | None:
            if not expected_version:
                rows = tx.execute(
                    "INSERT INTO canary_snapshots (route, version, snapshot, updated_at) "
                    "VALUES (?, 1, ?, {now}) ON CONFLICT (route) DO NOTHING RETURNING version",
                    (route, body),
                )
            else:
                # On Postgres a second writer waits for the first one's row lock, then sees
                # the new version and matches nothing: the compare and the set are one step.
                rows = tx.execute(
                    "UPDATE canary_snapshots SET version = version + 1, snapshot = ?, "
                    "updated_at = {now} WHERE route = ? AND version = ? RETURNING version",
                    (body, route, expected_version),
                )
            if not rows:
                return None
            version = int(rows[0][0])
            tx.executemany(
                "INSERT INTO canary_transitions (route, version, made_at, transition) "
                "VALUES (?, ?, {now}, ?)",
                [(route, version, t) for t in made],
            )
            return version

        return self._db.write(cas)

    def history(self, route: str, limit: int | None = None) -> list[dict[str, Any]]:
        """`route`'s transitions, oldest first (the last `limit` when given), each as it was
        written plus its `seq`."""
        rows = self._db.read(
            "SELECT seq, transition FROM canary_transitions WHERE route = ? "
            "ORDER BY seq DESC LIMIT ?",
            (route, _NO_LIMIT if limit is None else max(limit, 0)),
        )
        return [json.loads(t) | {"seq": int(seq)} for seq, t in reversed(rows)]

    # --- traffic counters -------------------------------------------------------------

    def publish_traffic(
        self, replica: str, at: float | None, deltas: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Append one row per route of `replica`'s counts for an interval, stamped `at` (None:
        the database's time). Rows are summed by the reader (`cluster.counters`)."""
        rows = [(replica, route, at, json.dumps(counters)) for route, counters in deltas.items()]
        if not rows:
            return
        self._db.write(
            lambda tx: tx.executemany(
                "INSERT INTO traffic (replica, route, at, counters) "
                "VALUES (?, ?, coalesce(?, {now}), ?)",
                rows,
            )
        )

    def traffic(self, route: str, since: float) -> list[dict[str, Any]]:
        """`route`'s rows stamped after `since`, oldest first: dicts of seq, replica, route,
        at and counters."""
        rows = self._db.read(
            "SELECT seq, replica, at, counters FROM traffic WHERE route = ? AND at > ? "
            "ORDER BY at, seq",
            (route, since),
        )
        return [
            {"seq": int(seq), "replica": replica, "route": route, "at": float(at),
             "counters": json.loads(counters)}
            for seq, replica, at, counters in rows
        ]  # fmt: skip

    def prune_traffic(self, before: float) -> int:
        """Delete the rows stamped before `before`; how many went."""

        def prune(tx: Transaction) -> int:
            tx.execute("DELETE FROM traffic WHERE at < ?", (before,))
            return tx.rowcount

        return self._db.write(prune)

    # --- owners of stored objects (cluster/objects.py) -----------------------------------

    def bind_objects(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Record (object id, kind, key id) of objects created through the proxy; an object
        keeps its first owner."""
        if rows:
            self._db.write(
                lambda tx: tx.executemany(
                    "INSERT INTO owned_objects (object_id, kind, key_id, created_at) "
                    "VALUES (?, ?, ?, {now}) ON CONFLICT (object_id) DO NOTHING",
                    list(rows),
                )
            )

    def object_owner(self, object_id: str) -> tuple[str, str] | None:
        """(kind, key id) of an object created through the proxy, or None."""
        rows = self._db.read(
            "SELECT kind, key_id FROM owned_objects WHERE object_id = ?", (object_id,)
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def owned_objects(self, kind: str, key_id: str) -> set[str]:
        """The ids of every object of `kind` that `key_id` created."""
        rows = self._db.read(
            "SELECT object_id FROM owned_objects WHERE key_id = ? AND kind = ?", (key_id, kind)
        )
        return {str(r[0]) for r in rows}

    # --- the leader lease -------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take lease `name` for `holder` until `ttl_s` from now, if it is free, expired or
        already `holder`'s (a renewal). True when `holder` holds it.

        At most one holder at any moment, by the database's clock. A holder should act as
        leader only until `ttl_s` after it *called* (its own clock), and renew well before,
        e.g. every ttl_s / 3: if it dies, another takes over after at most `ttl_s`."""
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")

        def acquire(tx: Transaction) -> bool:
            rows = tx.execute(
                "INSERT INTO leases (name, holder, expires_at, acquired_at) "
                "VALUES (?, ?, {now} + ?, {now}) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at, "
                "acquired_at = CASE WHEN leases.holder = excluded.holder "
                "THEN leases.acquired_at ELSE excluded.acquired_at END "
                "WHERE leases.holder = excluded.holder OR leases.expires_at <= {now} "
                "RETURNING holder",
                (name, holder, float(ttl_s)),
            )
            return bool(rows)

        return self._db.write(acquire)

    def release_lease(self, name: str, holder: str) -> bool:
        """Give lease `name` up, if `holder` holds it; another can take it at once."""

        def release(tx: Transaction) -> bool:
            tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
            return tx.rowcount > 0

        return self._db.write(release)

    def lease(self, name: str) -> Lease | None:
        """Who holds lease `name` now, and until when; None when it is free or expired."""
        rows = self._db.read(
            "SELECT holder, expires_at FROM leases WHERE name = ? AND expires_at > {now}",
            (name,),
        )
        return Lease(rows[0][0], float(rows[0][1])) if rows else None

    # --- the replica registry ---------------------------------------------------------

    def heartbeat(self, replica: str, info: Mapping[str, Any]) -> None:
        """Say `replica` is alive, with `info` (its address, version, ...), at database time."""
        self._db.write(
            lambda tx: tx.execute(
                "INSERT INTO replicas (replica, info, seen_at) VALUES (?, ?, {now}) "
                "ON CONFLICT (replica) DO UPDATE SET info = excluded.info, "
                "seen_at = excluded.seen_at",
                (replica, json.dumps(info)),
            )
        )

    def replicas(self, max_age_s: float) -> list[dict[str, Any]]:
        """Replicas whose last heartbeat is at most `max_age_s` old, by name: dicts of
        replica, info, seen_at and age_s."""
        rows = self._db.read(
            "SELECT replica, info, seen_at, {now} - seen_at FROM replicas "
            "WHERE seen_at >= {now} - ? ORDER BY replica",
            (float(max_age_s),),
        )
        return [
            {"replica": replica, "info": json.loads(info), "seen_at": float(seen_at),
             "age_s": max(float(age), 0.0)}
            for replica, info, seen_at, age in rows
        ]  # fmt: skip
