"""The plan stage: what a scale-up will write, decided before it writes anything.

Runs in the launcher, against the database, before the pipeline is built:

1. **Checks the templates** (``check_templates``): resources of the selection whose
   ``id`` is missing or not a string, ids that several of them share, and labels that
   may not enter Cypher are excluded, counted and reported with examples (they are
   the run's template dead letters); relationship types that may not enter Cypher
   likewise.
2. **Reads the template subgraph once** (``_TEMPLATES``, one streaming read): per
   template its internal node id, type, degree and its relationships to other
   templates, kept in a few numbers per template (numpy arrays), never as a list of
   records.
3. **Finds the connected components** of the template subgraph (templates joined by
   copied relationships between templates; shared nodes, and under a type filter
   resources of other types, do not join them), with a vectorised union-find.
4. **Decides the copies**: new nodes = round(N·(f−1)); every template gets ⌊f−1⌋
   copies; when f−1 is not an integer the last, partial replica takes whole
   components in plan order until the count is reached, splitting at most one (in
   breadth-first order from its first template, which keeps the cut small). A
   relationship of the split component whose other end has no copy in that replica is
   left out (``components.relationships_left_out``): never linked to the real
   template.
5. **Counts** what will be written, by type (the copies of relationships to shared
   nodes counted by the server, those between templates from the components).
6. **Packs the components into parts** (``transforms.batch.pack_parts``): the batches
   of the write, each whole components of about ``batch_size`` rows.

The plan order is a hash of each template's ``id`` (real ids carry no locality, and
the plan must not pretend they do): deterministic for a template set, so a re-run of
the same operation makes the same parts (``fingerprint`` tells whether it does).
``PlanError`` is bad input: nothing has been written.
"""

from __future__ import annotations

import dataclasses
import hashlib
from array import array
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import neo4j
import numpy as np

from transforms.batch import TemplatePart, adaptive_batch_size, pack_parts
from transforms.cypher import IDENTIFIER_PATTERN, is_safe_identifier
from transforms.model import (
    END_EXCLUDED,
    END_SHARED,
    END_TEMPLATE,
    OTHER_END_KIND,
    TemplateSelection,
    real_resource_predicate,
    selected_predicate,
    template_predicate,
)
from transforms.read import TEMPLATE_RELATIONSHIPS

#: The oldest Neo4j the writes run on: they pass labels and relationship types as
#: parameters (``CREATE (n:$(labels))``), which Neo4j 5.26 introduced.
MIN_NEO4J_VERSION = (5, 26)
#: Examples kept per kind of problem, for the report and the messages.
MAX_EXAMPLES = 5
#: Templates per query when counting the relationships of the templates with one copy more.
_COUNT_CHUNK = 20_000

#: One pass over the selected resources: how many, those without a string id (count and
#: examples), and those with a label that may not enter Cypher (all: they are excluded).
_SELECTED = f"""
MATCH (t:Resource) WHERE {selected_predicate('t')}
WITH t, t.id IS :: STRING NOT NULL AS has_id
RETURN count(t) AS selected,
       count(CASE WHEN NOT has_id THEN 1 END) AS no_id,
       collect(CASE WHEN NOT has_id
               THEN elementId(t) + ' (' + coalesce(toString(t.type), '?') + ')' END)[..$examples]
         AS no_id_examples,
       collect(CASE WHEN has_id AND any(label IN labels(t) WHERE NOT label =~ $identifier)
               THEN [t.id, [label IN labels(t) WHERE NOT label =~ $identifier]] END) AS unsafe
"""
_DUPLICATE_IDS = f"""
MATCH (t:Resource) WHERE {selected_predicate('t')} AND t.id IS :: STRING NOT NULL
WITH t.id AS id, count(*) AS n WHERE n > 1
RETURN id, n ORDER BY id
"""

#: Every template with what the plan needs of it. ``degree`` counts the relationships a
#: copy will have (rows per replica, for packing); ``edges`` are its outgoing copied
#: relationships to other templates (those join components). Whether the other end is
#: a template is asked in the projection, not in the pattern's WHERE: there, its
#: ``tenant_id`` could be answered by an index seek joined back to ``t``, a plan whose
#: cost grows with the square of the templates (a plan cached for a smaller graph may
#: choose it: once, in a benchmark loading bigger tenants in turn, the plan of 5,000
#: templates took 119 s of server CPU instead of under a second, and the server then
#: discarded as stale the plans it had cached for the smaller graph). Asked here, every
#: neighbour is reached from ``t`` whatever the statistics say.
_TEMPLATES = f"""
MATCH (t:Resource) WHERE {template_predicate('t')}
RETURN id(t) AS node, t.id AS id, t.type AS type,
       COUNT {{ (t)-[r]-(o) WHERE NOT type(r) IN $not_copied
                AND coalesce(o.synthetic, false) = false }} AS degree,
       [edge IN [(t)-[r]->(o) WHERE NOT type(r) IN $not_copied AND type(r) =~ $identifier
                 | CASE WHEN {template_predicate('o')} THEN [id(o), type(r)] END]
        WHERE edge IS NOT NULL] AS edges
"""

#: The template relationships by type and by what their other end is.
_RELATIONSHIPS_BY_END = f"""
MATCH (t:Resource) WHERE {template_predicate('t')}
{TEMPLATE_RELATIONSHIPS}
RETURN type(r) AS type, {OTHER_END_KIND} AS end, count(*) AS n
"""
#: The same for some templates only (those with one copy more), by internal node id.
_RELATIONSHIPS_BY_END_OF = f"""
UNWIND $nodes AS node
MATCH (t:Resource) WHERE id(t) = node AND {template_predicate('t')}
{TEMPLATE_RELATIONSHIPS}
RETURN type(r) AS type, {OTHER_END_KIND} AS end, count(*) AS n
"""


class PlanError(ValueError):
    """The request cannot be planned as asked (bad input: nothing is written)."""


class NoTemplatesError(PlanError):
    """The tenant (or the type filter) selects no template; the message says what exists."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """Records of one kind the plan refuses: how many, why, and the first few."""

    reason: str
    count: int
    examples: Tuple[str, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"reason": self.reason, "count": self.count, "examples": list(self.examples)}


@dataclasses.dataclass(frozen=True)
class TemplateCheck:
    """What ``check_templates`` found: the selected resources, the excluded ones and why."""

    selected: int
    excluded_ids: Tuple[str, ...]
    problems: Tuple[Problem, ...]

    @property
    def excluded(self) -> int:
        return sum(problem.count for problem in self.problems)


@dataclasses.dataclass(frozen=True)
class ComponentSummary:
    """The template subgraph's connected components, and how the partial replica took them."""

    count: int
    largest: int
    in_partial_replica: int
    split: int
    relationships_left_out: int

    def to_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    """Everything known about a scale-up before it writes anything."""

    selection: TemplateSelection
    template_count: int
    templates_by_type: Dict[str, int]
    base_copies: int
    templates_with_extra_copy: int
    new_node_count: int
    new_nodes_by_type: Dict[str, int]
    template_relationships_by_type: Dict[str, int]
    new_relationships_by_type: Dict[str, int]
    components: ComponentSummary
    template_problems: Tuple[Problem, ...]
    relationship_problems: Tuple[Problem, ...]
    batch_size: int
    parts: Tuple[TemplatePart, ...]
    fingerprint: str

    @property
    def new_relationship_count(self) -> int:
        return sum(self.new_relationships_by_type.values())

    @property
    def max_copies(self) -> int:
        """Copies of the templates with the most: the number of replicas."""
        return self.base_copies + (1 if self.templates_with_extra_copy else 0)

    @property
    def dead_letters(self) -> int:
        """Templates and template relationships the plan excluded."""
        return sum(p.count for p in (*self.template_problems, *self.relationship_problems))


def new_node_count_for(template_count: int, scale_factor: Optional[float], target_count: Optional[int]) -> int:
    """round(N·(f−1)) for a factor, ``target − N`` for a target count (exactly one given)."""
    if (scale_factor is None) == (target_count is None):
        raise ValueError("give exactly one of scale_factor and target_count")
    if target_count is not None:
        return target_count - template_count
    return round(template_count * (scale_factor - 1))


def _describe_existing(session: neo4j.Session, selection: TemplateSelection) -> str:
    if selection.resource_types:
        types = session.run(
            f"MATCH (t:Resource) WHERE {selected_predicate('t')} "
            "RETURN t.type AS type, count(*) AS n ORDER BY type",
            {**selection.parameters(), "types": None},
        ).data()
        if types:
            listed = ", ".join(f"{row['type']} ({row['n']})" for row in types)
            return (
                f"the type filter {list(selection.resource_types)} matches no template of "
                f"tenant {selection.tenant_id!r}; its types are: {listed}"
            )
    tenants = session.run(
        f"MATCH (t:Resource) WHERE {real_resource_predicate('t')} AND t.tenant_id IS NOT NULL "
        "RETURN t.tenant_id AS tenant, count(*) AS n ORDER BY n DESC, tenant LIMIT 20"
    ).data()
    listed = ", ".join(f"{row['tenant']} ({row['n']} resources)" for row in tenants) or "none"
    return f"tenant {selection.tenant_id!r} has no resources to copy; tenants in this database: {listed}"


def check_server_version(session: neo4j.Session) -> None:
    """``PlanError`` unless the server is Neo4j ``MIN_NEO4J_VERSION`` or later (calendar
    versions such as 2025.01 are later)."""
    version = session.run("CALL dbms.components() YIELD versions RETURN versions[0] AS v").single()["v"]
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return  # an unknown scheme: let the statements speak for themselves
    if major_minor < MIN_NEO4J_VERSION:
        raise PlanError(f"the scale-up needs Neo4j {'.'.join(map(str, MIN_NEO4J_VERSION))} or "
                        f"later; this server is Neo4j {version}")


def check_templates(session: neo4j.Session, selection: TemplateSelection) -> TemplateCheck:
    """The selected resources that cannot be templates, by reason: no string ``id``, an
    ``id`` several of them share (which copy would be whose?), a label that may not
    enter Cypher. Raises ``NoTemplatesError`` when nothing is selected."""
    params = {**selection.parameters(), "identifier": IDENTIFIER_PATTERN, "examples": MAX_EXAMPLES}
    found = session.run(_SELECTED, params).single()
    selected = found["selected"]
    if selected == 0:
        raise NoTemplatesError(_describe_existing(session, selection))
    problems = []
    if found["no_id"]:
        problems.append(Problem("no string id", found["no_id"], tuple(found["no_id_examples"])))
    duplicates = session.run(_DUPLICATE_IDS, params).data()
    excluded = {row["id"] for row in duplicates}
    if duplicates:
        problems.append(Problem("an id that several resources of the selection share",
                                sum(row["n"] for row in duplicates),
                                tuple(f"{row['id']} (x{row['n']})" for row in duplicates[:MAX_EXAMPLES])))
    unsafe = sorted((template_id, labels) for template_id, labels in found["unsafe"]
                    if template_id not in excluded)
    if unsafe:
        problems.append(Problem("a label that may not be written into Cypher", len(unsafe),
                                tuple(f"{template_id} {labels}" for template_id, labels in unsafe[:MAX_EXAMPLES])))
        excluded.update(template_id for template_id, _ in unsafe)
    return TemplateCheck(selected, tuple(sorted(excluded)), tuple(problems))


def plan_order_key(template_id: str) -> int:
    """Where a template stands in the plan order: 64 bits of a hash of its ``id``."""
    return int.from_bytes(hashlib.blake2b(template_id.encode("utf-8"), digest_size=8).digest(), "big")


@dataclasses.dataclass
class _Templates:
    """The template subgraph as the plan keeps it: numbers per template, in plan order."""

    nodes: np.ndarray          # internal node id
    keys: np.ndarray           # plan order key
    types: np.ndarray          # index into type_names
    weights: np.ndarray        # rows per replica: 1 + degree
    type_names: List[str]
    edge_starts: np.ndarray    # positions
    edge_ends: np.ndarray
    edge_types: np.ndarray     # index into type_names

    @property
    def count(self) -> int:
        return len(self.nodes)


def _read_templates(session: neo4j.Session, params: Dict[str, Any]) -> _Templates:
    """One streaming read of every template; returns them in plan order."""
    codes: Dict[str, int] = {}
    nodes, keys, types, weights = array("q"), array("Q"), array("i"), array("q")
    starts, ends, edge_types = array("q"), array("q"), array("i")
    for record in session.run(_TEMPLATES, params):
        node = record["node"]
        nodes.append(node)
        keys.append(plan_order_key(record["id"]))
        types.append(codes.setdefault(record["type"], len(codes)))
        weights.append(1 + record["degree"])
        for other, rel_type in record["edges"]:
            starts.append(node)
            ends.append(other)
            edge_types.append(codes.setdefault(rel_type, len(codes)))
    node_array = np.frombuffer(nodes, dtype=np.int64)
    order = np.lexsort((node_array, np.frombuffer(keys, dtype=np.uint64)))
    node_array = node_array[order]
    by_node = np.argsort(node_array)
    starts_pos, ends_pos, kept = _positions(node_array, by_node, np.frombuffer(starts, dtype=np.int64),
                                            np.frombuffer(ends, dtype=np.int64))
    return _Templates(
        nodes=node_array,
        keys=np.frombuffer(keys, dtype=np.uint64)[order],
        types=np.frombuffer(types, dtype=np.int32)[order],
        weights=np.frombuffer(weights, dtype=np.int64)[order],
        type_names=list(codes),
        edge_starts=starts_pos, edge_ends=ends_pos,
        edge_types=np.frombuffer(edge_types, dtype=np.int32)[kept],
    )


def _positions(nodes: np.ndarray, by_node: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Plan positions of edge ends given as internal node ids; edges whose end is not a
    template (it changed while the plan read) are dropped."""
    if len(starts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=bool)
    sorted_nodes = nodes[by_node]

    def position(ids):
        at = np.clip(np.searchsorted(sorted_nodes, ids), 0, len(nodes) - 1)
        return by_node[at], sorted_nodes[at] == ids

    start_pos, start_ok = position(starts)
    end_pos, end_ok = position(ends)
    kept = start_ok & end_ok
    return start_pos[kept], end_pos[kept], kept


def connected_components(count: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For ``count`` nodes and edges ``starts[i]—ends[i]`` (positions), the component of
    each node, named by its smallest position.

    A vectorised union-find: each round hooks the root of every edge's larger end to
    the smaller root, then jumps pointers until every node points at a root; it stops
    when every edge has one root. Memory: a few arrays of ``count`` and of the edges.
    """
    label = np.arange(count, dtype=np.int64)
    if len(starts):
        while True:
            start_roots, end_roots = label[starts], label[ends]
            if np.array_equal(start_roots, end_roots):
                break
            smaller = np.minimum(start_roots, end_roots)
            np.minimum.at(label, start_roots, smaller)
            np.minimum.at(label, end_roots, smaller)
            while True:
                jumped = label[label]
                if np.array_equal(jumped, label):
                    break
                label = jumped
    smallest = np.full(count, count, dtype=np.int64)
    np.minimum.at(smallest, label, np.arange(count, dtype=np.int64))
    return smallest[label]


def breadth_first(members: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> List[int]:
    """The positions of one component in breadth-first order from its first member
    (edges given as positions; those of other components are ignored)."""
    member_set = set(members.tolist())
    neighbours: Dict[int, List[int]] = {m: [] for m in member_set}
    for a, b in zip(starts.tolist(), ends.tolist()):
        if a in member_set:
            neighbours[a].append(b)
            neighbours[b].append(a)
    first = int(members.min())
    order, seen = [first], {first}
    for node in order:
        for other in sorted(neighbours[node]):
            if other not in seen:
                seen.add(other)
                order.append(other)
    return order


def choose_extra_copies(components: np.ndarray, extra_needed: int, starts: np.ndarray,
                        ends: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """Which templates get the extra (partial-replica) copy: whole components in plan
    order while they fit, then the first ``extra_needed`` left of the next one in
    breadth-first order. Returns (one flag per template, components taken whole,
    components split: 0 or 1)."""
    count = len(components)
    extra = np.zeros(count, dtype=np.uint8)
    if extra_needed == 0:
        return extra, 0, 0
    roots, sizes = np.unique(components, return_counts=True)  # roots ascending = plan order
    cumulative = np.cumsum(sizes)
    whole = int(np.searchsorted(cumulative, extra_needed, side="right"))
    taken = np.isin(components, roots[:whole])
    extra[taken] = 1
    remaining = extra_needed - (int(cumulative[whole - 1]) if whole else 0)
    if remaining == 0:
        return extra, whole, 0
    split_members = np.flatnonzero(components == roots[whole])
    extra[breadth_first(split_members, starts, ends)[:remaining]] = 1
    return extra, whole, 1


def _count_by_type(names: Sequence[str], codes: np.ndarray, weights: np.ndarray) -> Dict[str, int]:
    counts = np.bincount(codes, weights=weights, minlength=len(names)) if len(codes) else []
    return {names[code]: int(n) for code, n in enumerate(counts) if n}


def _add(counts: Dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


def plan_scale_up(
    driver: neo4j.Driver,
    database: str,
    selection: TemplateSelection,
    scale_factor: Optional[float],
    target_count: Optional[int],
    max_new_nodes: int,
    batch_size: Optional[int] = None,
) -> ScalePlan:
    """Check the templates, find components, decide copies, count, pack parts.

    Raises ``NoTemplatesError`` when nothing matches, ``PlanError`` when no template is
    usable or the factor or target count asks for no new resources or for more than
    ``max_new_nodes``. ``batch_size`` (rows per write transaction) defaults to the
    adaptive size for the expected rows.
    """
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        check_server_version(session)
        check = check_templates(session, selection)
        selection = dataclasses.replace(selection, excluded_ids=check.excluded_ids)
        params = {**selection.parameters(), "identifier": IDENTIFIER_PATTERN}
        templates = _read_templates(session, params)
        if templates.count == 0:
            raise PlanError(f"none of the {check.selected:,} selected resources can be copied: "
                            + "; ".join(f"{p.count:,} with {p.reason} (e.g. {', '.join(p.examples)})"
                                        for p in check.problems))
        new_count = new_node_count_for(templates.count, scale_factor, target_count)
        if new_count < 1:
            raise PlanError(f"this scale-up would create {new_count} resources from "
                            f"{templates.count} templates; ask for a larger factor or target count")
        if new_count > max_new_nodes:
            raise PlanError(f"this scale-up would create {new_count:,} resources from "
                            f"{templates.count:,} templates, more than the limit of "
                            f"{max_new_nodes:,}; ask for less")
        base_copies, extra_needed = divmod(new_count, templates.count)
        components = connected_components(templates.count, templates.edge_starts, templates.edge_ends)
        extra, whole, split = choose_extra_copies(components, extra_needed, templates.edge_starts,
                                                  templates.edge_ends)
        by_end = _relationships_by_end(session, _RELATIONSHIPS_BY_END, params)
        extra_by_end = _relationships_by_end_of(session, params, templates.nodes[extra == 1])
    names = templates.type_names
    copies = base_copies + extra.astype(np.int64)
    # Between templates: a copy in every replica where both ends have one.
    start_extra, end_extra = extra[templates.edge_starts], extra[templates.edge_ends]
    edge_copies = base_copies + (start_extra & end_extra).astype(np.int64)
    left_out = int(np.count_nonzero(start_extra != end_extra))
    _check_edges_agree(by_end, names, templates.edge_types)
    template_relationships = _count_by_type(names, templates.edge_types,
                                            np.ones(len(templates.edge_types)))
    new_relationships = _count_by_type(names, templates.edge_types, edge_copies)
    problems: Dict[str, Dict[str, int]] = {"unsafe type": {}, "excluded end": {}}
    for (rel_type, end), n in by_end.items():
        if not is_safe_identifier(rel_type):
            _add(problems["unsafe type"], rel_type, n)
        elif end == END_EXCLUDED:
            _add(problems["excluded end"], rel_type, n)
        elif end == END_SHARED:
            _add(template_relationships, rel_type, n)
            _add(new_relationships, rel_type, n * base_copies + extra_by_end.get((rel_type, end), 0))
    rows = new_count + sum(new_relationships.values())
    batch_size = batch_size or adaptive_batch_size(rows, "write")
    sizes = np.unique(components, return_counts=True)[1]
    return ScalePlan(
        selection=selection,
        template_count=templates.count,
        templates_by_type=_count_by_type(names, templates.types, np.ones(templates.count)),
        base_copies=base_copies,
        templates_with_extra_copy=extra_needed,
        new_node_count=new_count,
        new_nodes_by_type=_count_by_type(names, templates.types, copies),
        template_relationships_by_type=template_relationships,
        new_relationships_by_type=new_relationships,
        components=ComponentSummary(count=len(sizes), largest=int(sizes.max()),
                                    in_partial_replica=whole + split, split=split,
                                    relationships_left_out=left_out),
        template_problems=check.problems,
        relationship_problems=_relationship_problems(problems),
        batch_size=batch_size,
        parts=_parts(templates, extra, components, base_copies, batch_size),
        fingerprint=_fingerprint(templates.keys, extra, base_copies, batch_size,
                                 check.excluded_ids),
    )


def _parts(templates: _Templates, extra: np.ndarray, components: np.ndarray, base_copies: int,
           batch_size: int) -> Tuple[TemplatePart, ...]:
    """The write's parts: every component, or with no base copy (a factor below 2) only
    the components the partial replica copies (the others have nothing to write)."""
    kept = slice(None) if base_copies else np.isin(components, components[extra == 1])
    return pack_parts(templates.nodes[kept], extra[kept], components[kept],
                      templates.weights[kept], batch_size)


def _relationships_by_end(session: neo4j.Session, query: str,
                          params: Dict[str, Any]) -> Dict[Tuple[str, str], int]:
    return {(row["type"], row["end"]): row["n"] for row in session.run(query, params)}


def _relationships_by_end_of(session: neo4j.Session, params: Dict[str, Any],
                             nodes: np.ndarray) -> Dict[Tuple[str, str], int]:
    """``_relationships_by_end`` of the templates with these internal ids, a chunk at a time."""
    counts: Dict[Tuple[str, str], int] = {}
    for first in range(0, len(nodes), _COUNT_CHUNK):
        chunk = nodes[first:first + _COUNT_CHUNK].tolist()
        for key, n in _relationships_by_end(session, _RELATIONSHIPS_BY_END_OF,
                                            {**params, "nodes": chunk}).items():
            counts[key] = counts.get(key, 0) + n
    return counts


def _check_edges_agree(by_end: Dict[Tuple[str, str], int], names: List[str],
                       edge_types: np.ndarray) -> None:
    """The relationships between templates, counted twice, must agree; they differ only
    when the graph changed while the plan read it."""
    counted = sum(n for (rel_type, end), n in by_end.items()
                  if end == END_TEMPLATE and is_safe_identifier(rel_type))
    if counted != len(edge_types):
        raise PlanError("the templates changed while the scale-up was being planned "
                        f"({counted} relationships between templates, then {len(edge_types)}); "
                        "run it again when the graph is not being written")


def _relationship_problems(problems: Dict[str, Dict[str, int]]) -> Tuple[Problem, ...]:
    reasons = {"unsafe type": "a relationship type that may not be written into Cypher",
               "excluded end": "the other end is a resource of the selection that is not copied"}
    return tuple(
        Problem(reasons[kind], sum(by_type.values()),
                tuple(f"{rel_type} (x{n})" for rel_type, n in sorted(by_type.items())[:MAX_EXAMPLES]))
        for kind, by_type in problems.items() if by_type)


def _fingerprint(keys: np.ndarray, extra: np.ndarray, base_copies: int, batch_size: int,
                 excluded_ids: Iterable[str]) -> str:
    """What a re-run must find again to continue the same operation: the templates in
    plan order, their copies, the batch size (which cut the parts), the exclusions."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(keys.tobytes())
    digest.update(extra.tobytes())
    digest.update(f"{base_copies}/{batch_size}".encode())
    digest.update("\x1f".join(excluded_ids).encode("utf-8"))
    return digest.hexdigest()
