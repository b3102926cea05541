"""The driver changes the cluster state only through ``ClusterState``'s methods: resizing keeps
ids and carries every instance's status over, retiring lets a running query finish where it
is, withdrawing takes a queued query out. And every policy, the kairos package included, is
found by name without importing its module first."""

from __future__ import annotations

import subprocess
import sys

from kairos.distributor.driver import Driver
from kairos.scenario import Scenario
from kairos.workload import Query
from tests.distributor.driver import CPU, GPU


def _driver() -> Driver:
    return Driver(Scenario.build("rm2"), (GPU, CPU), "fcfs", seed=0)


def test_add_instances_keeps_ids_and_status_and_starts_the_new_ones_down():
    driver = _driver()
    (qid, busy), *_ = driver.arrive(Query(0, 0.0, 10), 0.0)
    driver.down(1 - busy, 0.5)
    driver.arrive(Query(1, 0.6, 10), 0.6)
    old = driver.state
    assert driver.add_instances((CPU, GPU), 1.0) == [2, 3]
    state = driver.state
    assert state.instance_type == (GPU, CPU, CPU, GPU)
    assert state.now_s == 1.0 and list(state.queue) == [1]
    running = state.running[busy]
    assert running is old.running[busy] and running is not None and running.qid == qid
    assert state.est_free_s[:2] == old.est_free_s
    assert state.up == [j == busy for j in range(2)] + [False, False]
    assert state.idle == set()
    assert driver.up(3, 1.1) == [(1, 3)]
    started = state.running[3]
    assert state.idle == set() and started is not None and started.qid == 1


def test_retire_lets_the_running_query_finish_and_keeps_the_instance_out():
    driver = _driver()
    (_, busy), *_ = driver.arrive(Query(0, 0.0, 10), 0.0)
    free = 1 - busy
    assert sorted(driver.retire([busy, free], 0.1)) == [free]
    assert driver.retire([free], 0.2) == []
    state = driver.state
    assert state.running[busy] is not None and not state.up[busy] and state.idle == set()
    query, starts = driver.complete(busy, 0.3)
    assert query.qid == 0 and starts == [] and state.idle == set()
    assert driver.up(busy, 0.4) == [] and not state.up[busy]
    assert driver.active == []


def test_withdraw_takes_a_queued_query_out_and_sets_the_clock():
    driver = _driver()
    for j in range(2):
        driver.down(j, 0.0)
    driver.arrive(Query(5, 0.1, 10), 0.1)
    withdrawn = driver.withdraw(5, 0.2)
    assert withdrawn is not None and withdrawn.qid == 5
    assert driver.withdraw(5, 0.3) is None
    assert driver.state.now_s == 0.3 and not driver.state.queue


def test_every_policy_is_found_by_name_in_a_fresh_process():
    # A fresh interpreter: nothing has imported a policy module before the lookup, so a policy
    # that lives in a subpackage (policies/kairos/) must be found by the scan itself.
    code = "from kairos.distributor import policy_names; print(','.join(policy_names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(out.stdout.strip().split(",")) >= {"kairos", "fcfs", "clockwork"}
