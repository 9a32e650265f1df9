"""Operations, stats and rollback against a real Neo4j.

One module-scoped setup: two demo tenants (120 and 60 resources), two scale-ups of the
first (op-a1 x2, op-a2 x3) and one of the second (op-b1 x2). The tests run in file
order: the read-only ones first; the rollbacks of one operation roll back operations
they scale up themselves; the tenant-wide rollback with ``--yes`` comes last, as it
removes op-a1 and op-a2.
"""

from __future__ import annotations

import json
import re
from typing import Dict, Tuple

import pytest

from pipelines import scale_up
from pipelines.operation import record as operations
from pipelines.operation import rollback, stats
from pipelines.demo.load import load_demo_tenant
from pipelines.operation.record import UnknownOperationError, get_operation, list_operations
from pipelines.operation.rollback import rollback_operation
from pipelines.operation.stats import UnknownTenantError, resource_stats
from pipelines.operation.validate import validate_operation
from tests.support import fingerprint, last_json, operation_counts, run_main, scalar
from transforms.demo import DemoTenantSpec

TENANT, OTHER = "tenant-a", "tenant-b"
RESOURCES = {TENANT: 120, OTHER: 60}
#: The setup's operations, in the order they run: id → (tenant, scale factor).
SETUP = {"op-a1": (TENANT, 2.0), "op-a2": (TENANT, 3.0), "op-b1": (OTHER, 2.0)}


def tenant_synthetic(driver, tenant: str) -> Tuple[int, int, Dict[str, int]]:
    """(nodes, relationships touching them, nodes by operation) of a tenant's synthetic
    resources, counted directly."""
    nodes = scalar(driver, "MATCH (n:Resource {tenant_id: $t, synthetic: true}) RETURN count(n)",
                   t=tenant)
    relationships = scalar(driver, "MATCH (n:Resource {tenant_id: $t, synthetic: true})-[r]-() "
                                   "RETURN count(DISTINCT r)", t=tenant)
    by_operation = dict(driver.execute_query(
        "MATCH (n:Resource {tenant_id: $t, synthetic: true}) "
        "RETURN n.scale_operation_id, count(*)", t=tenant).records)
    return nodes, relationships, by_operation


def run_scale_up(tmp_path, operation_id: str, tenant: str, factor: float) -> dict:
    report_path = tmp_path / f"{operation_id}.json"
    code = scale_up.run(["--tenant-id", tenant, "--scale-factor", str(factor),
                          "--operation-id", operation_id, "--max-concurrent-writes", "2",
                          "--report", str(report_path)])
    assert code == 0
    return json.loads(report_path.read_text())


@pytest.fixture(scope="module")
def graph(neo4j_connection, clear_neo4j, tmp_path_factory):
    """Two tenants, three operations; the run reports by operation id."""
    clear_neo4j()
    for seed, (tenant, resources) in enumerate(RESOURCES.items(), 21):
        load_demo_tenant(neo4j_connection, DemoTenantSpec(tenant, resources=resources, seed=seed))
    tmp_path = tmp_path_factory.mktemp("operations")
    reports = {op: run_scale_up(tmp_path, op, tenant, factor)
               for op, (tenant, factor) in SETUP.items()}
    return {"reports": reports, "tmp_path": tmp_path, "database": neo4j_connection.database}


# ------------------------------------------------------------------------ operations

def test_list_gives_every_operation_newest_first_with_status_and_figures(graph, neo4j_driver):
    listed = list_operations(neo4j_driver, graph["database"])
    started = [o["started_at"] for o in listed]
    assert started == sorted(started, reverse=True)
    ours = [o for o in listed if o["id"] in SETUP]
    assert [o["id"] for o in ours] == list(reversed(SETUP))
    for operation in ours:
        report = graph["reports"][operation["id"]]
        tenant, factor = SETUP[operation["id"]]
        nodes, relationships = tuple(operation_counts(neo4j_driver, operation["id"]).values())
        assert operation["tenant_id"] == tenant and operation["status"] == operations.SUCCEEDED
        assert operation["parameters"]["scale_factor"] == factor
        assert operation["runs"] == 1 and operation["error"] is None
        assert operation["finished_at"] > operation["started_at"]
        assert operation["nodes_written"] == report["written"]["nodes"] == nodes > 0
        assert operation["relationships_written"] == report["written"]["relationships"] == relationships
        assert operation["duration_s"] == report["duration_s"] > 0
        assert operation["nodes_per_s"] == report["throughput"]["nodes_per_s"] > 0
        assert operation["relationships_per_s"] == report["throughput"]["relationships_per_s"]
        assert operation["rolled_back_at"] is None and operation["nodes_deleted"] is None


def test_list_filters_by_tenant_and_limits(graph, neo4j_driver):
    database = graph["database"]
    assert [o["id"] for o in list_operations(neo4j_driver, database, OTHER)] == ["op-b1"]
    assert {o["id"] for o in list_operations(neo4j_driver, database, TENANT)} >= {"op-a1", "op-a2"}
    newest = list_operations(neo4j_driver, database)[0]
    assert list_operations(neo4j_driver, database, limit=1) == [newest]
    assert list_operations(neo4j_driver, database, "no-such-tenant") == []


def test_get_operation_gives_the_stored_report_and_unknown_ids_list_recent(graph, neo4j_driver):
    operation = get_operation(neo4j_driver, graph["database"], "op-a2")
    assert operation["report"] == graph["reports"]["op-a2"]
    assert {k: v for k, v in operation.items() if k != "report"} in list_operations(
        neo4j_driver, graph["database"])
    with pytest.raises(UnknownOperationError, match="no-such-op.*op-b1"):
        get_operation(neo4j_driver, graph["database"], "no-such-op")


def test_operations_command_lists_shows_and_refuses_bad_input(graph, neo4j_driver, capsys):
    code, out, _ = run_main(operations.main, ["--json"], capsys)
    assert code == 0
    assert last_json(out) == {"operations": list_operations(neo4j_driver, graph["database"])}
    code, out, _ = run_main(operations.main, ["list", "--tenant-id", OTHER], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and "status" in lines[0]
    assert lines[1].split()[:3] == ["op-b1", OTHER, "succeeded"]
    code, out, _ = run_main(operations.main, ["show", "op-a1", "--json"], capsys)
    assert code == 0 and last_json(out)["report"] == graph["reports"]["op-a1"]
    code, out, _ = run_main(operations.main, ["show", "op-a1"], capsys)
    written = graph["reports"]["op-a1"]["written"]
    assert code == 0 and "succeeded" in out
    assert f"{written['nodes']:,} nodes, {written['relationships']:,} relationships" in out

    code, _, err = run_main(operations.main, ["show", "no-such-op"], capsys)
    assert code == 2 and "no-such-op" in err and all(op in err for op in SETUP)
    code, _, err = run_main(operations.main, ["--tenant-id", "no-such-tenant"], capsys)
    assert code == 2 and TENANT in err and OTHER in err
    code, _, err = run_main(operations.main, ["show"], capsys)
    assert code == 2 and "show needs the operation id" in err


@pytest.mark.parametrize("main", [operations.main, stats.main, rollback.main])
def test_every_command_has_help(main, capsys):
    code, out, _ = run_main(main, ["--help"], capsys)
    assert code == 0 and "usage: python -m pipelines." in out and "--neo4j-uri" in out


# ------------------------------------------------------------------------------ stats

def test_stats_equal_direct_counts(graph, neo4j_driver):
    result = resource_stats(neo4j_driver, graph["database"])
    by_tenant = {row["tenant_id"]: row for row in result["by_tenant"]}
    assert set(by_tenant) == set(RESOURCES)
    for tenant, resources in RESOURCES.items():
        real = scalar(neo4j_driver, "MATCH (n:Resource {tenant_id: $t}) "
                      "WHERE NOT n:Original AND n.synthetic IS NULL RETURN count(n)", t=tenant)
        synthetic = tenant_synthetic(neo4j_driver, tenant)[0]
        original = scalar(neo4j_driver, "MATCH (n:Original {tenant_id: $t}) RETURN count(n)",
                          t=tenant)
        assert real == original == resources and synthetic > 0
        assert by_tenant[tenant] == {"tenant_id": tenant, "real": real, "synthetic": synthetic,
                                     "original": original,
                                     "scale": round((real + synthetic) / real, 3)}
    for kind, where in (("real", "NOT n:Original AND n.synthetic IS NULL"),
                        ("synthetic", "n.synthetic = true"), ("original", "n:Original")):
        direct = dict(neo4j_driver.execute_query(
            f"MATCH (n:Resource) WHERE {where} RETURN n.type, count(*)").records)
        assert {row["type"]: row[kind] for row in result["by_type"] if row[kind]} == direct
        assert result["total"][kind] == sum(direct.values())
    assert result["total"]["resources"] == scalar(neo4j_driver, "MATCH (n:Resource) RETURN count(n)")
    assert {row["operation_id"]: (row["tenant_id"], row["synthetic"])
            for row in result["by_operation"]} == {
        op: (tenant, tuple(operation_counts(neo4j_driver, op).values())[0]) for op, (tenant, _) in SETUP.items()}
    assert {row["status"] for row in result["by_operation"]} == {operations.SUCCEEDED}
    assert result["synthetic_without_operation"] == 0


def test_stats_of_one_tenant_and_the_command(graph, neo4j_driver, capsys):
    everything = resource_stats(neo4j_driver, graph["database"])
    other = resource_stats(neo4j_driver, graph["database"], OTHER)
    assert other["by_tenant"] == [row for row in everything["by_tenant"] if row["tenant_id"] == OTHER]
    assert [row["operation_id"] for row in other["by_operation"]] == ["op-b1"]
    assert other["total"]["synthetic"] == tuple(operation_counts(neo4j_driver, "op-b1").values())[0]

    code, out, _ = run_main(stats.main, ["--tenant-id", OTHER, "--json"], capsys)
    assert code == 0
    assert {**last_json(out), "seconds": 0} == {**other, "seconds": 0}
    code, out, _ = run_main(stats.main, [], capsys)
    assert code == 0 and f"{TENANT}  " in out and "op-a2" in out
    code, _, err = run_main(stats.main, ["--tenant-id", "no-such-tenant"], capsys)
    assert code == 2 and "no-such-tenant" in err and TENANT in err and OTHER in err
    with pytest.raises(UnknownTenantError, match=OTHER):
        resource_stats(neo4j_driver, graph["database"], "no-such-tenant")


# --------------------------------------------------------------------------- rollback

def _add_stray_relationship(driver, operation_id: str) -> str:
    """A relationship marked with the operation between two real resources (no scale-up
    writes one): the rollback must leave it. Returns its element id."""
    return driver.execute_query(
        "MATCH (a:Resource {tenant_id: $t}) WHERE NOT a:Original AND a.synthetic IS NULL "
        "WITH a ORDER BY a.id LIMIT 2 WITH collect(a) AS ends "
        "WITH ends[0] AS a, ends[1] AS b "
        "CREATE (a)-[r:DEPENDS_ON {scale_operation_id: $op}]->(b) RETURN elementId(r)",
        t=OTHER, op=operation_id).records[0][0]


@pytest.mark.parametrize("via", ["function", "command-batches-of-7"])
def test_rollback_of_one_operation_deletes_exactly_what_it_created(graph, neo4j_driver, capsys,
                                                                   via):
    database = graph["database"]
    operation_id = f"op-a-{via}"
    report = run_scale_up(graph["tmp_path"], operation_id, TENANT, 2.0)
    stray = _add_stray_relationship(neo4j_driver, operation_id)
    nodes, marked = tuple(operation_counts(neo4j_driver, operation_id).values())
    relationships = report["written"]["relationships"]
    assert nodes == report["written"]["nodes"] > 0 and marked == relationships + 1
    before = fingerprint(neo4j_driver, [operation_id])
    ledgers = "MATCH (b:ScaleBatch) WHERE b.operation_id IN $ops RETURN count(b)"
    assert scalar(neo4j_driver, ledgers, ops=[operation_id]) == report["batches"]["count"] > 0
    others = scalar(neo4j_driver, ledgers, ops=list(SETUP))

    if via == "function":
        result = rollback_operation(neo4j_driver, database, operation_id)
    else:
        code, out, err = run_main(rollback.main, [
            "--operation-id", operation_id, "--batch-size", "7", "--progress-interval", "0.01",
            "--json"], capsys)
        assert code == 0
        result = last_json(out)
        assert f"{nodes} nodes and {relationships} relationships deleted" in err
        # Progress counts what the committed inner transactions deleted: whole batches.
        progress = [int(n) for n in re.findall(rf"(\d+) of {nodes} nodes deleted", err)]
        assert all(n % 7 == 0 or n == nodes for n in progress)

    assert (result["nodes_deleted"], result["relationships_deleted"]) == (nodes, relationships)
    assert result["operation_id"] == operation_id and result["tenant_id"] == TENANT
    assert tuple(operation_counts(neo4j_driver, operation_id).values()) == (0, 1)
    # Its ledger of written batches goes too; other operations' stay.
    assert scalar(neo4j_driver, ledgers, ops=[operation_id]) == 0
    assert scalar(neo4j_driver, ledgers, ops=list(SETUP)) == others > 0
    assert scalar(neo4j_driver, "MATCH ()-[r]->() WHERE elementId(r) = $id RETURN count(r)",
                  id=stray) == 1
    # Gone again: between two templates of OTHER, it would change what op-b1 should have.
    neo4j_driver.execute_query("MATCH ()-[r]->() WHERE elementId(r) = $id DELETE r", id=stray)
    assert fingerprint(neo4j_driver, [operation_id]) == before
    for other in SETUP:
        assert validate_operation(neo4j_driver, database, other).ok
    record = get_operation(neo4j_driver, database, operation_id)
    assert record["status"] == operations.ROLLED_BACK
    assert (record["nodes_deleted"], record["relationships_deleted"]) == (nodes, relationships)
    assert record["rolled_back_at"] == result["rolled_back_at"] is not None
    assert record["nodes_written"] == report["written"]["nodes"]  # the run's figures stay

    again = rollback_operation(neo4j_driver, database, operation_id, batch_size=7)
    assert (again["nodes_deleted"], again["relationships_deleted"]) == (0, 0)
    assert get_operation(neo4j_driver, database, operation_id) == record


def test_unknown_operation_or_tenant_exits_2_lists_what_exists_and_changes_nothing(
        graph, neo4j_driver, capsys):
    before = fingerprint(neo4j_driver, [])
    code, _, err = run_main(rollback.main, ["--operation-id", "no-such-op"], capsys)
    assert code == 2 and "no-such-op" in err and "op-b1" in err
    with pytest.raises(UnknownOperationError, match="recent operations: .*op-b1"):
        rollback_operation(neo4j_driver, graph["database"], "no-such-op")
    code, _, err = run_main(rollback.main, ["--tenant-id", "no-such-tenant", "--all-synthetic",
                                            "--yes"], capsys)
    assert code == 2 and "no-such-tenant" in err and TENANT in err and OTHER in err
    assert fingerprint(neo4j_driver, []) == before


@pytest.mark.parametrize("args, message", [
    ([], "one of the arguments --operation-id --tenant-id is required"),
    (["--tenant-id", TENANT], "--all-synthetic"),
    (["--tenant-id", TENANT, "--all-synthetic", "--operation-id", "op-a1"], "not allowed with"),
    (["--operation-id", "op-a1", "--all-synthetic"], "--all-synthetic goes with --tenant-id"),
    (["--operation-id", "op-a1", "--batch-size", "0"], "--batch-size must be from 1"),
    (["--operation-id", "op-a1", "--progress-interval", "0"], "--progress-interval must be"),
])
def test_bad_rollback_arguments_exit_2_before_connecting(args, message, capsys):
    code, _, err = run_main(rollback.main, [*args, "--neo4j-uri", "bolt://127.0.0.1:1"], capsys)
    assert code == 2 and message in err


def test_tenant_rollback_without_yes_says_what_it_would_delete_and_deletes_nothing(
        graph, neo4j_driver, capsys):
    before = fingerprint(neo4j_driver, [])
    nodes, relationships, by_operation = tenant_synthetic(neo4j_driver, TENANT)
    code, out, err = run_main(rollback.main, ["--tenant-id", TENANT, "--all-synthetic", "--json"],
                              capsys)
    assert code == 2 and "--yes" in err
    assert f"{nodes:,} synthetic nodes" in err and f"{relationships:,} relationships" in err
    assert all(f"{op}: {n:,}" in err for op, n in by_operation.items())
    preview = last_json(out)
    assert preview["deleted"] is False
    assert (preview["would_delete"]["nodes"], preview["would_delete"]["relationships"]) == (
        nodes, relationships)
    assert fingerprint(neo4j_driver, []) == before


def test_tenant_rollback_with_yes_deletes_all_synthetic_of_that_tenant_only(graph, neo4j_driver,
                                                                           capsys):
    """Last: it removes op-a1 and op-a2."""
    database = graph["database"]
    _, _, by_operation = tenant_synthetic(neo4j_driver, TENANT)
    assert {"op-a1", "op-a2"} <= set(by_operation)
    per_operation = {op: tuple(operation_counts(neo4j_driver, op).values()) for op in by_operation}
    before = fingerprint(neo4j_driver, list(by_operation))
    # A synthetic resource no operation claims (an older tool's): it goes too.
    neo4j_driver.execute_query(
        "MATCH (t:Tenant {id: $t}) CREATE (:Resource {id: 'legacy-copy', tenant_id: $t, "
        "synthetic: true, type: 'Microsoft.Compute/disks'})-[:LOCATED_IN]->(t)", t=TENANT)
    # One in the other tenant that claims op-a2 (no scale-up makes that): it stays.
    foreign = {"id": "foreign-copy", "tenant_id": OTHER, "synthetic": True,
               "scale_operation_id": "op-a2", "type": "Microsoft.Compute/disks"}
    neo4j_driver.execute_query("CREATE (n:Resource) SET n = $props", props=foreign)
    nodes, relationships, _ = tenant_synthetic(neo4j_driver, TENANT)

    code, out, _ = run_main(rollback.main, ["--tenant-id", TENANT, "--all-synthetic", "--yes",
                                            "--batch-size", "50", "--json"], capsys)
    assert code == 0
    result = last_json(out)
    assert (result["nodes_deleted"], result["relationships_deleted"]) == (nodes, relationships)
    assert {row["operation_id"]: (row["nodes_deleted"], row["relationships_deleted"])
            for row in result["operations"]} == per_operation
    assert tenant_synthetic(neo4j_driver, TENANT)[:2] == (0, 0)
    assert neo4j_driver.execute_query(
        "MATCH (n:Resource {id: 'foreign-copy'}) RETURN properties(n)").records[0][0] == foreign
    neo4j_driver.execute_query("MATCH (n:Resource {id: 'foreign-copy'}) DELETE n")
    assert fingerprint(neo4j_driver, list(by_operation)) == before
    for op, (op_nodes, op_relationships) in per_operation.items():
        record = get_operation(neo4j_driver, database, op)
        assert record["status"] == operations.ROLLED_BACK
        assert (record["nodes_deleted"], record["relationships_deleted"]) == (op_nodes,
                                                                              op_relationships)
    assert get_operation(neo4j_driver, database, "op-b1")["status"] == operations.SUCCEEDED
    assert validate_operation(neo4j_driver, database, "op-b1").ok
