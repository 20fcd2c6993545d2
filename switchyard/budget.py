"""Monthly budgets on commercial spend that hold under concurrency.

Before a commercial call the worker *reserves* the call's worst-case cost (prompt estimate + max output tokens
at list price) against every applicable scope ('*' overall, and the job's tenant), in one transaction that
locks those scopes' rows (SELECT ... FOR UPDATE). Reserved + spent can never exceed the limit, so fifty
concurrent calls against a budget that admits ten make ten calls. After the call the reservation is *settled*
to the real cost in the same transaction that writes the result and ledger entry; a call that never happened
is *released*. Spend is therefore counted before the fact, not after.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert

from schemas.tables import BudgetPeriod, BudgetReservation
from switchyard.catalog import BudgetSpec
from switchyard.errors import BudgetExceeded


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Hold:
    job_id: uuid.UUID
    amount: Decimal
    scopes: tuple[str, ...]


class Budgets:
    def __init__(self, spec: BudgetSpec, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine

    def scopes_for(self, tenant: str | None) -> dict[str, Decimal]:
        limits: dict[str, Decimal] = {}
        if self.spec.monthly_usd is not None:
            limits["*"] = self.spec.monthly_usd
        if tenant is not None and tenant in self.spec.tenants:
            limits[f"tenant:{tenant}"] = self.spec.tenants[tenant]
        return limits

    def reserve(self, job_id: uuid.UUID, tenant: str | None, amount: Decimal) -> Hold | None:
        """Hold ``amount`` for the job, or raise BudgetExceeded. None when no budget applies."""
        limits = self.scopes_for(tenant)
        if not limits:
            return None
        month = current_month()
        with self.engine.begin() as conn:
            existing = conn.execute(select(BudgetReservation.state, BudgetReservation.amount_usd,
                                           BudgetReservation.scopes)
                                    .where(BudgetReservation.job_id == job_id).with_for_update()).first()
            if existing is not None and existing.state == "reserved":
                return Hold(job_id, existing.amount_usd, tuple(existing.scopes))  # a retry keeps its hold
            for scope, limit in limits.items():
                conn.execute(insert(BudgetPeriod).values(scope=scope, month=month, limit_usd=limit,
                                                         reserved_usd=0, spent_usd=0)
                             .on_conflict_do_nothing(constraint="uq_budget_periods_scope_month"))
            # Lock in a fixed order so that two reservations never deadlock.
            rows = conn.execute(select(BudgetPeriod.id, BudgetPeriod.scope, BudgetPeriod.spent_usd,
                                       BudgetPeriod.reserved_usd)
                                .where(BudgetPeriod.month == month, BudgetPeriod.scope.in_(sorted(limits)))
                                .order_by(BudgetPeriod.scope).with_for_update()).all()
            for row in rows:
                limit = limits[row.scope]  # the configured limit wins over the stored one
                if row.spent_usd + row.reserved_usd + amount > limit:
                    raise BudgetExceeded(
                        f"budget {row.scope} for {month}: spent ${row.spent_usd:.2f} + reserved "
                        f"${row.reserved_usd:.2f} + this job ${amount:.4f} > limit ${limit:.2f}")
            for row in rows:
                row_update = (update(BudgetPeriod).where(BudgetPeriod.id == row.id)
                              .values(reserved_usd=BudgetPeriod.reserved_usd + amount, limit_usd=limits[row.scope]))
                conn.execute(row_update)
            values = dict(job_id=job_id, month=month, scopes=sorted(limits), amount_usd=amount, state="reserved")
            if existing is None:
                conn.execute(insert(BudgetReservation).values(**values))
            else:
                conn.execute(update(BudgetReservation).where(BudgetReservation.job_id == job_id).values(**values))
        return Hold(job_id, amount, tuple(sorted(limits)))

    @staticmethod
    def settle(conn: Connection, job_id: uuid.UUID, actual: Decimal) -> None:
        """Turn the job's hold into real spend (call inside the result's transaction). Idempotent."""
        _close(conn, job_id, actual, "settled")

    def release(self, job_id: uuid.UUID) -> None:
        """Drop the job's hold: the call did not happen (or failed before any cost)."""
        with self.engine.begin() as conn:
            _close(conn, job_id, Decimal(0), "released")


def _close(conn: Connection, job_id: uuid.UUID, actual: Decimal, state: str) -> None:
    hold = conn.execute(select(BudgetReservation.scopes, BudgetReservation.month, BudgetReservation.amount_usd)
                        .where(BudgetReservation.job_id == job_id, BudgetReservation.state == "reserved")
                        .with_for_update()).first()
    if hold is None:
        return
    for scope in sorted(hold.scopes):
        conn.execute(update(BudgetPeriod).where(BudgetPeriod.scope == scope, BudgetPeriod.month == hold.month)
                     .values(reserved_usd=BudgetPeriod.reserved_usd - hold.amount_usd,
                             spent_usd=BudgetPeriod.spent_usd + actual))
    conn.execute(update(BudgetReservation).where(BudgetReservation.job_id == job_id)
                 .values(state=state, amount_usd=actual if state == "settled" else hold.amount_usd))
