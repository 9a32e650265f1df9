"""``validate``'s ``no_link_to_real_resources`` against a real Neo4j: clean operations
pass; a hand-made link between a synthetic node and one of the operation's templates
fails validation (exit 1) and is named; links the check must allow are not reported."""

from __future__ import annotations

import pytest

from pipelines.operation import validate
from pipelines.operation.validate import validate_operation
from tests.support import last_json, run_main, run_scale_up, scalar, scale_beside_another
from transforms.demo import DemoTenantSpec

TENANT, OTHER_TENANT = "links-tenant", "links-beside"
VM, SUBNET = "Microsoft.Compute/virtualMachines", "Microsoft.Network/virtualNetworks/subnets"
CHECK = "no_link_to_real_resources"
#: Marks the relationships a test makes by hand, so it can remove them again.
HAND_MADE = "hand_made"


@pytest.fixture(scope="module")
def operations(neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory):
    """Two demo tenants; the first scaled x2 (``op-all``) and its VMs x2 (``op-vms``)."""
    scaled = scale_beside_another(
        neo4j_connection, neo4j_driver, clear_neo4j, tmp_path_factory.mktemp("links"),
        DemoTenantSpec(TENANT, resources=120, seed=31),
        DemoTenantSpec(OTHER_TENANT, resources=100, seed=32), {"all": 2.0})
    code, report = run_scale_up(scaled["tmp_path"], "--tenant-id", TENANT, "--scale-factor", "2",
                                "--operation-id", "op-vms", "--resource-types", VM)
    assert code == 0 and report["status"] == "succeeded", report
    return neo4j_connection.database


@pytest.fixture
def hand_made_links(neo4j_driver):
    """Creates ``(a)-[:TYPE {hand_made: true}]->(b)`` by element ids; removes them after."""
    def link(start: str, rel_type: str, end: str) -> None:
        neo4j_driver.execute_query(
            f"MATCH (a), (b) WHERE elementId(a) = $a AND elementId(b) = $b "
            f"CREATE (a)-[:{rel_type} {{{HAND_MADE}: true}}]->(b)", a=start, b=end)

    yield link
    neo4j_driver.execute_query(f"MATCH ()-[r]->() WHERE r.{HAND_MADE} DELETE r")


def _one(driver, query: str, **params):
    """The single record of ``query`` (the node pair a test links)."""
    [record] = driver.execute_query(query, **params).records
    return record


def _real(driver, tenant: str, resource_type: str):
    """(element id, id) of a real resource of ``tenant`` and that type."""
    return _one(driver, "MATCH (t:Resource {tenant_id: $t, type: $type}) "
                        "WHERE NOT t:Original AND t.synthetic IS NULL "
                        "RETURN elementId(t) AS element, t.id AS id ORDER BY t.id LIMIT 1",
                t=tenant, type=resource_type)


def _copy(driver, operation_id: str):
    """(element id, id) of a synthetic node of the operation."""
    return _one(driver, "MATCH (s:Resource {scale_operation_id: $op}) "
                        "RETURN elementId(s) AS element, s.id AS id ORDER BY s.id LIMIT 1",
                op=operation_id)


def _validate(operation_id: str, capsys):
    """``python -m pipelines.validate --operation-id ID --json``: (exit code, its result)."""
    code, out, _ = run_main(validate.main, ["--operation-id", operation_id, "--json"], capsys)
    return code, last_json(out)


@pytest.mark.parametrize("operation_id", ["op-all", "op-vms"])
def test_clean_operations_pass(operations, neo4j_driver, operation_id, capsys):
    code, result = _validate(operation_id, capsys)
    assert code == 0 and result["ok"]
    assert result["checks"][CHECK] == {"ok": True, "problems": 0, "examples": []}


def test_a_type_filter_makes_resources_of_other_types_shared_nodes(operations, neo4j_driver):
    """The VM copies link to the real NICs and disks, as their templates do: allowed."""
    linked = scalar(neo4j_driver,
                    "MATCH (s:Resource {scale_operation_id: 'op-vms'})-[r]-(t:Resource) "
                    "WHERE NOT t:Original AND t.synthetic IS NULL AND t.tenant_id = $t "
                    "AND t.type <> $vm RETURN count(r)", t=TENANT, vm=VM)
    assert linked > 0
    assert validate_operation(neo4j_driver, operations, "op-vms").ok


def test_a_link_between_a_copy_and_a_real_template_fails_and_is_named(
        operations, neo4j_driver, hand_made_links, capsys):
    copy = _copy(neo4j_driver, "op-all")
    subnet, vm = _real(neo4j_driver, TENANT, SUBNET), _real(neo4j_driver, TENANT, VM)
    hand_made_links(copy["element"], "USES_SUBNET", subnet["element"])
    hand_made_links(vm["element"], "DEPENDS_ON", copy["element"])

    code, result = _validate("op-all", capsys)
    assert code == 1 and not result["ok"]
    check = result["checks"][CHECK]
    assert (check["ok"], check["problems"]) == (False, 2)
    assert sorted(check["examples"]) == sorted([
        f"{copy['id']} -[USES_SUBNET]-> real resource {subnet['id']} ({SUBNET})",
        f"{copy['id']} <-[DEPENDS_ON]- real resource {vm['id']} ({VM})"])

    code, out, _ = run_main(validate.main, ["--operation-id", "op-all"], capsys)
    assert code == 1
    assert f"FAIL {CHECK}: 2 problems" in out and f"real resource {subnet['id']}" in out


def test_only_the_operations_templates_count(operations, neo4j_driver, hand_made_links, capsys):
    """A real resource of another tenant, or of a type outside the filter, is no template
    of the operation: this check leaves such links to the others; one to a template of
    the filtered type is reported."""
    copy = _copy(neo4j_driver, "op-vms")
    hand_made_links(copy["element"], "DEPENDS_ON", _real(neo4j_driver, OTHER_TENANT, VM)["element"])
    hand_made_links(copy["element"], "USES_SUBNET", _real(neo4j_driver, TENANT, SUBNET)["element"])
    assert validate_operation(neo4j_driver, operations, "op-vms").to_dict()["checks"][CHECK][
        "problems"] == 0

    vm = _real(neo4j_driver, TENANT, VM)
    hand_made_links(copy["element"], "CONNECTED_TO", vm["element"])
    code, result = _validate("op-vms", capsys)
    assert code == 1
    assert result["checks"][CHECK]["examples"] == [
        f"{copy['id']} -[CONNECTED_TO]-> real resource {vm['id']} ({VM})"]
