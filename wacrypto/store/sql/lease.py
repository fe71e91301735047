"""The instance lease of an account: one writer at a time, with heartbeat, expiry and a fencing token.

The lease row (``wa_lease``, row 1) names the holder, a token incremented by every takeover, and an
expiry timed by the database server's clock. Every commit checks the token (:meth:`Lease.check_fence`):
once another instance has taken over, this one gets :class:`LeaseLostError` instead of writing.

Scale-out (:mod:`wacrypto.whatsapp.stripes`): the worker of stripe ``i`` of ``n`` holds the lease of
that stripe instead (row ``100 * n + i``), with its own token; one writer per stripe. While one is
live, a lease of the whole account or of another stripe count is refused (and the other way round),
so an account is served either by one instance or by one set of ``n`` stripes; a lease taken once
those have expired moves the tokens of all of them on, so their old holders are fenced even though
their own rows were not taken over (a holder's name lets it take over only its own row). Every
acquisition holds one advisory lock (``LEASE_LOCK_KEY``) while it looks at all the rows, so two
racing acquisitions see each other.
"""

from __future__ import annotations

import math
import os
import socket

import trio

from wacrypto.errors import InstanceConflictError, InvalidArgumentError, LeaseLostError
from wacrypto.limits import DEFAULT_LEASE_SECONDS
from wacrypto.store.sql.admin import AdminConnection, db_now
from wacrypto.store.sql.dialect import Conn
from wacrypto.stripe import Stripe

__all__ = ["LEASE_LOCK_KEY", "Lease", "lease_row", "row_stripe"]

LEASE_LOCK_KEY = "\x00lease"  # held by an acquisition while it reads and writes the lease rows


def lease_row(stripe: Stripe) -> int:
    """The ``wa_lease`` row of a stripe's lease (1: the whole account)."""
    return 1 if stripe.whole else 100 * stripe.count + stripe.index


def row_stripe(row: int) -> Stripe:
    """The stripe a ``wa_lease`` row is the lease of (inverse of :func:`lease_row`)."""
    return Stripe() if row == 1 else Stripe(row % 100, row // 100)


def _scope(stripe: Stripe) -> str:
    return "the account" if stripe.whole else f"stripe {stripe}"


class Lease:
    """The lease state of one store instance (no lease until :meth:`acquire`)."""

    def __init__(self, admin: AdminConnection) -> None:
        self._admin = admin
        self.dialect = admin.dialect
        self.holder: str | None = None
        self.token: int | None = None
        self.seconds = DEFAULT_LEASE_SECONDS
        self.fenced = False  # set once a takeover is seen: this instance may no longer write
        self.stripe = Stripe()  # what the lease covers (the whole account unless acquired for a stripe)
        self._row = 1

    def check_fence(self, conn: Conn) -> None:
        """Inside a write transaction (worker side): refuse to commit unless our lease is current and unexpired.

        The lease row is read with a shared lock, so a takeover waits for this commit to finish.
        """
        if self.token is None:
            return
        now_expr = self.dialect.now_sql.removeprefix("SELECT ")
        r = conn.query(f"SELECT holder, token, expires_at, {now_expr} FROM wa_lease WHERE id = ?" + self.dialect.for_share,
                       [self._row])
        if not r or int(r[0][1]) != self.token:
            self.fenced = True
            raise LeaseLostError(
                f"lease of {self.holder} was taken over"
                + (f" by {r[0][0]}" if r else "")
                + "; this instance may no longer write"
            )
        if float(r[0][2]) < float(r[0][3]):
            raise LeaseLostError(f"lease of {self.holder} expired (heartbeat missed); renew it before writing")

    async def acquire(self, holder: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                      stripe: Stripe | None = None) -> int:
        if not (isinstance(lease_seconds, (int, float)) and math.isfinite(lease_seconds) and lease_seconds > 0):
            raise InvalidArgumentError("lease_seconds must be a positive number")
        want = stripe if stripe is not None else Stripe()
        if not isinstance(want, Stripe):
            raise InvalidArgumentError("stripe is a wacrypto.whatsapp.stripes.Stripe")
        if self.token is not None and want != self.stripe:
            raise InvalidArgumentError(f"this store holds the lease of {_scope(self.stripe)}; release it first")
        row = lease_row(want)
        me = holder or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        if len(me) > 200:
            raise InvalidArgumentError("lease holder name is too long")
        d = self.dialect

        def run(conn: Conn) -> int:
            d.begin(conn)
            try:
                d.wait_lock(conn, [LEASE_LOCK_KEY])
                now = db_now(conn, d)
                rows = {int(r[0]): r for r in conn.query("SELECT id, holder, token, expires_at FROM wa_lease" + d.for_update)}
                excluded = [rid for rid in rows if rid == row or row_stripe(rid).count != want.count]
                for rid in sorted(excluded):
                    r = rows[rid]
                    if (rid == row and str(r[1]) == me) or float(r[3]) <= now:
                        continue  # our own row (a restart takes over at once), or expired
                    raise InstanceConflictError(
                        f"{_scope(row_stripe(rid))} is in use by instance {r[1]!s} (lease valid for "
                        f"{float(r[3]) - now:.1f} s more); {_scope(want)} cannot be leased meanwhile",
                        holder=str(r[1]),
                    )
                for rid in excluded:  # fence every holder this lease excludes: its token moves on
                    if rid != row:
                        conn.execute("UPDATE wa_lease SET token = token + 1, expires_at = 0 WHERE id = ?", [rid])
                token = int(rows[row][2]) + 1 if row in rows else 1
                if row in rows:
                    conn.execute(
                        "UPDATE wa_lease SET holder = ?, token = ?, expires_at = ?, updated_at = ? WHERE id = ?",
                        [me, token, now + lease_seconds, now, row],
                    )
                else:
                    conn.execute(
                        "INSERT INTO wa_lease (id, holder, token, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        [row, me, token, now + lease_seconds, now],
                    )
                d.commit(conn)
                return token
            except BaseException:
                d.rollback(conn)
                raise
            finally:
                try:
                    d.release_locks(conn, [LEASE_LOCK_KEY])
                except BaseException:
                    conn.broken = True

        token = await self._admin.call(run)
        self.holder, self.token, self.seconds = me, token, float(lease_seconds)
        self.stripe, self._row = want, row
        self.fenced = False
        return token

    async def renew(self) -> None:
        if self.token is None:
            raise InvalidArgumentError("this store holds no lease")
        token, secs, d, row = self.token, self.seconds, self.dialect, self._row

        def run(conn: Conn) -> int:
            now = db_now(conn, d)
            return conn.execute(
                "UPDATE wa_lease SET expires_at = ?, updated_at = ? WHERE id = ? AND token = ?",
                [now + secs, now, row, token],
            )

        if await self._admin.call(run) != 1:
            self.fenced = True
            raise LeaseLostError(f"lease of {self.holder} was taken over; this instance may no longer write")

    async def release(self) -> None:
        if self.token is None:
            return
        token, row = self.token, self._row

        def run(conn: Conn) -> None:
            conn.execute("UPDATE wa_lease SET expires_at = 0 WHERE id = ? AND token = ?", [row, token])

        try:
            await self._admin.call(run)
        finally:
            self.token = None

    async def heartbeat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.seconds / 3)
            await self.renew()
