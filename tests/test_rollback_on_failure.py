"""--rollback-on-failure: a failed run leaves nothing behind."""

import json

from pipelines import scale_up


def test_a_failed_run_is_rolled_back_when_asked(neo4j_graph, neo4j_driver, tmp_path):
    neo4j_driver.execute_query(
        "UNWIND range(1, 30) AS i "
        "CREATE (r:Resource {id: 'rb/' + i, name: 'r' + i, tenant_id: 'rb', type: 'T'}) "
        "WITH r, i WHERE i = 7 SET r:`Bad Label`")
    report_path = tmp_path / "report.json"
    code = scale_up.main(["--tenant-id", "rb", "--scale-factor", "3", "--operation-id", "op-rb",
                          "--rollback-on-failure", "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 1
    assert report["status"] == "rolled_back" and report["dead_letters"] == 1
    assert report["rolled_back"]["nodes_deleted"] == 58  # 29 good templates x 2 copies
    remaining = neo4j_driver.execute_query(
        "MATCH (n:Resource {scale_operation_id: 'op-rb'}) RETURN count(n)").records[0][0]
    status = neo4j_driver.execute_query(
        "MATCH (o:ScaleOperation {id: 'op-rb'}) RETURN o.status").records[0][0]
    assert remaining == 0 and status == "rolled_back"
    assert neo4j_driver.execute_query(
        "MATCH (n:Resource {tenant_id: 'rb'}) RETURN count(n)").records[0][0] == 30
