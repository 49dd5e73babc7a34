"""Random sequences of lease, give back, break, cancel, fail and maintain keep the invariants."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tenantproxy.pool import Lease, Pool, TargetBudget
from tests.unit.pool.fakes import FakeClock, FakeConn, FakeConnector, OpenCounter, settle

N_POOLS = 3
POOL_MAX_SIZE = 3
BUDGET = 4


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.server = OpenCounter()
        self.budget = TargetBudget("t1", BUDGET)
        # Pool 0 adopts other pools' idle backends; the others close them (both paths run).
        self.connectors = [FakeConnector(self.server, adopts=i == 0) for i in range(N_POOLS)]
        self.pools: list[Pool[FakeConn]] = [
            Pool(
                connector,
                name=f"t1/user{i}",
                budget=self.budget,
                max_size=POOL_MAX_SIZE,
                min_idle=1,
                max_idle=2,
                idle_timeout_s=10,
                borrow_timeout_s=10_000,  # real seconds: never reached here
                clock=self.clock,
            )
            for i, connector in enumerate(self.connectors)
        ]
        self.held: list[tuple[int, Lease[FakeConn]]] = []
        self.pending: list[tuple[int, asyncio.Task[Lease[FakeConn]]]] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def settle(self) -> None:
        self.run(settle(30))
        still_pending = []
        for index, task in self.pending:
            if not task.done():
                still_pending.append((index, task))
            elif not task.cancelled() and task.exception() is None:
                self.held.append((index, task.result()))
        self.pending = still_pending

    @rule(index=st.integers(0, N_POOLS - 1), fails=st.booleans())
    def lease(self, index: int, fails: bool) -> None:
        if fails:
            self.connectors[index].connect_failures_to_come = 1
        task = self.loop.create_task(self.pools[index].lease())
        self.pending.append((index, task))
        self.settle()
        self.connectors[index].connect_failures_to_come = 0

    @precondition(lambda self: self.held)
    @rule(data=st.data(), needs_reset=st.booleans(), is_broken=st.booleans())
    def give_back(self, data: st.DataObject, needs_reset: bool, is_broken: bool) -> None:
        index, lease = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.run(self.pools[index].give_back(lease, needs_reset=needs_reset, is_broken=is_broken))
        self.settle()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def break_a_leased_backend(self, data: st.DataObject) -> None:
        _, lease = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        lease.connection.is_broken = True

    @rule(index=st.integers(0, N_POOLS - 1))
    def break_an_idle_backend(self, index: int) -> None:
        idle_backends = list(self.pools[index]._idle)
        if idle_backends:
            idle_backends[0].connection.is_broken = True

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def cancel_a_waiter(self, data: st.DataObject) -> None:
        _, task = self.pending[data.draw(st.integers(0, len(self.pending) - 1))]
        task.cancel()
        self.settle()

    @rule(seconds=st.sampled_from([0, 5, 11]))
    def maintain(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for pool in self.pools:
            self.run(pool.maintain())
        self.settle()

    @invariant()
    def collections_and_caps_agree(self) -> None:
        total = 0
        for pool in self.pools:
            stats = pool.stats()
            assert stats.size == stats.idle + stats.leased + stats.connecting
            assert stats.size <= POOL_MAX_SIZE
            assert stats.connecting == 0  # the fake connects at once
            total += stats.size
        assert self.budget.in_use == total
        assert self.budget.in_use <= BUDGET
        assert self.server.open_now == total
        assert self.server.peak <= BUDGET
        assert sum(p.stats().leased for p in self.pools) == len(self.held)
        assert sum(p.stats().waiting for p in self.pools) == len(self.pending)

    @invariant()
    def nobody_waits_while_a_backend_could_be_had(self) -> None:
        for pool in self.pools:
            stats = pool.stats()
            if not stats.waiting:
                continue
            assert stats.idle == 0
            others_idle = sum(p.stats().idle for p in self.pools if p is not pool)
            is_budget_full = self.budget.in_use >= self.budget.max_connections
            assert stats.size == POOL_MAX_SIZE or (is_budget_full and others_idle == 0)

    def teardown(self) -> None:
        for _, task in self.pending:
            task.cancel()
        self.run(settle(30))
        for pool in self.pools:
            self.run(pool.close())
        assert self.budget.in_use == 0
        assert self.server.open_now == 0
        self.loop.close()


PoolMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestPoolInvariants = PoolMachine.TestCase
