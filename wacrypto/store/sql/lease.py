"""The instance lease of an account: one writer at a time, with heartbeat, expiry and a fencing token.

The lease row (``wa_lease``, one row) names the holder, a token incremented by every takeover, and an
expiry timed by the database server's clock. Every commit checks the token (:meth:`Lease.check_fence`):
once another instance has taken over, this one gets :class:`LeaseLostError` instead of writing.
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

__all__ = ["Lease"]


class Lease:
    """The lease state of one store instance (no lease until :meth:`acquire`)."""

    def __init__(self, admin: AdminConnection) -> None:
        self._admin = admin
        self.dialect = admin.dialect
        self.holder: str | None = None
        self.token: int | None = None
        self.seconds = DEFAULT_LEASE_SECONDS
        self.fenced = False  # set once a takeover is seen: this instance may no longer write

    def check_fence(self, conn: Conn) -> None:
        """Inside a write transaction (worker side): refuse to commit unless our lease is current and unexpired.

        The lease row is read with a shared lock, so a takeover waits for this commit to finish.
        """
        if self.token is None:
            return
        now_expr = self.dialect.now_sql.removeprefix("SELECT ")
        r = conn.query(f"SELECT holder, token, expires_at, {now_expr} FROM wa_lease WHERE id = 1" + self.dialect.for_share)
        if not r or int(r[0][1]) != self.token:
            self.fenced = True
            raise LeaseLostError(
                f"lease of {self.holder} was taken over"
                + (f" by {r[0][0]}" if r else "")
                + "; this instance may no longer write"
            )
        if float(r[0][2]) < float(r[0][3]):
            raise LeaseLostError(f"lease of {self.holder} expired (heartbeat missed); renew it before writing")

    async def acquire(self, holder: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> int:
        if not (isinstance(lease_seconds, (int, float)) and math.isfinite(lease_seconds) and lease_seconds > 0):
            raise InvalidArgumentError("lease_seconds must be a positive number")
        me = holder or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        if len(me) > 200:
            raise InvalidArgumentError("lease holder name is too long")
        d = self.dialect

        def run(conn: Conn) -> int:
            d.begin(conn)
            try:
                now = db_now(conn, d)
                r = conn.query("SELECT holder, token, expires_at FROM wa_lease WHERE id = 1" + d.for_update)
                if r and str(r[0][0]) != me and float(r[0][2]) > now:
                    raise InstanceConflictError(
                        f"account is in use by instance {r[0][0]!s} (lease valid for {float(r[0][2]) - now:.1f} s more)",
                        holder=str(r[0][0]),
                    )
                token = int(r[0][1]) + 1 if r else 1
                if r:
                    conn.execute(
                        "UPDATE wa_lease SET holder = ?, token = ?, expires_at = ?, updated_at = ? WHERE id = 1",
                        [me, token, now + lease_seconds, now],
                    )
                else:
                    conn.execute(
                        "INSERT INTO wa_lease (id, holder, token, expires_at, updated_at) VALUES (1, ?, ?, ?, ?)",
                        [me, token, now + lease_seconds, now],
                    )
                d.commit(conn)
                return token
            except BaseException:
                d.rollback(conn)
                raise

        token = await self._admin.call(run)
        self.holder, self.token, self.seconds = me, token, float(lease_seconds)
        self.fenced = False
        return token

    async def renew(self) -> None:
        if self.token is None:
            raise InvalidArgumentError("this store holds no lease")
        token, secs, d = self.token, self.seconds, self.dialect

        def run(conn: Conn) -> int:
            now = db_now(conn, d)
            return conn.execute(
                "UPDATE wa_lease SET expires_at = ?, updated_at = ? WHERE id = 1 AND token = ?",
                [now + secs, now, token],
            )

        if await self._admin.call(run) != 1:
            self.fenced = True
            raise LeaseLostError(f"lease of {self.holder} was taken over; this instance may no longer write")

    async def release(self) -> None:
        if self.token is None:
            return
        token = self.token

        def run(conn: Conn) -> None:
            conn.execute("UPDATE wa_lease SET expires_at = 0 WHERE id = 1 AND token = ?", [token])

        try:
            await self._admin.call(run)
        finally:
            self.token = None

    async def heartbeat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.seconds / 3)
            await self.renew()
