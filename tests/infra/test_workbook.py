"""The workbook of infra/ (modules/workbook.bicep, content modules/workbook.json) reads the telemetry the functions send.

Its queries read Application Insights' ``customMetrics`` (one row per metric,
export and set of attributes: ``name``, ``value``, ``valueCount``, ``valueSum``,
``valueMin``, ``valueMax``, the attributes in ``customDimensions``) and
``traces`` (the log lines; ``customDimensions.request_id`` on lines about a
request). The checks here hold every query to the metric names of
``functions.telemetry.METRIC_NAMES``, to the attributes the functions really set
(found by running the functions' own recording code, :func:`emitted`) and to
their values, and every metric to at least one query: a renamed metric,
attribute or timer fails here instead of leaving a chart empty.

How the workbook aggregates (also said in its first text item): the Azure
Monitor exporter sends a histogram (``aca.start.duration``,
``aca.timer.duration``) as one row per export interval holding the count
(``valueCount``), sum (``valueSum`` = ``value``), min and max of what it
recorded, not the single measurements. So averages are
``sum(valueSum) / sum(valueCount)``; percentiles are ``percentilew`` of each
row's mean ``valueSum / valueCount`` weighted by ``valueCount`` (exact while a
row holds one start, as with starts minutes apart; a percentile over ``value``
would rank sums of several starts); maxima are ``max(valueMax)``. Counters are
sent as deltas per export (``sum(value)``), gauges as the last value set (a time
bin shows its ``max(value)``).

KQL is read by a small lexer (strings and comments never count as code), not
parsed: a query starts with the table it reads, and every ``union``/``join``/
``lookup`` names the tables (or parenthesised queries) it adds. Forms that read
other data or that the lexer cannot follow (``let``, ``table()``, ``app()``,
``search``, a metric name compared inexactly, ``customDimensions`` by a
computed key) are reported as problems, never skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from bicepcheck import (
    INFRA,
    Call,
    Ref,
    declared,
    expression,
    module_params,
    output,
    params,
    parse_file,
    resources,
    variable,
    walk,
)

from acaspawner.contract import Phase, Status
from acaspawner.culler_service import SERVICE_NAME as CULLER
from acaspawner.report import figures_of
from functions import telemetry
from functions.culler import CullSummary
from functions.pool_timer import NAME as WARM_POOL
from functions.pool_timer import PoolSummary
from functions.reconcile_run import NAME as RECONCILER
from functions.reconcile_run import ReconcileSummary

MODULES = INFRA / "modules"
WORKBOOK_BICEP = MODULES / "workbook.bicep"
WORKBOOK_JSON = MODULES / "workbook.json"
MONITORING_BICEP = MODULES / "monitoring.bicep"
MAIN_BICEP = INFRA / "main.bicep"

WORKBOOK_TYPE = "Microsoft.Insights/workbooks"
COMPONENTS = "microsoft.insights/components"
TABLES = {"customMetrics", "traces"}
VISUALIZATIONS = {"timechart", "table", "barchart"}
TIMERS = (CULLER, RECONCILER, WARM_POOL)
SUMMARIES = (CullSummary, ReconcileSummary, PoolSummary)


# --- what the functions send ------------------------------------------------------------------


class _Recorder:
    """An instrument that notes what it is given."""

    def __init__(self, name: str, seen: list[tuple[str, dict[str, Any]]]) -> None:
        self.name, self.seen = name, seen

    def add(self, value: float, attributes: dict[str, Any] | None = None) -> None:
        self.seen.append((self.name, dict(attributes or {})))

    record = set = add


def _status(phase: Phase, code: str = "") -> Status:
    events = [{"phase": Phase.QUEUED.value, "time": 1.0}, {"phase": phase.value, "time": 5.0}]
    return Status(hub_id="hub", server_key="key", phase=phase, generation=1, error_code=code, events=events)


@pytest.fixture
def emitted(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """(metric, attributes) of every measurement the functions' telemetry code makes on each of its paths."""
    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(telemetry, "_instrument", lambda name: _Recorder(name, seen))
    telemetry.status_written(_status(Phase.RUNNING))
    telemetry.status_written(_status(Phase.FAILED, "NoCapacity"))
    for timer in TIMERS:
        telemetry.run_ended(timer, 2.0, 0, {"culled": 1.0, "seconds": 2.0})
        telemetry.run_ended(timer, 2.0, 1, {})
    telemetry.environment_counted("cae-1", 1.5, 100.0, 3)
    return seen


@dataclass(frozen=True)
class Telemetry:
    """What a query may read: each metric's attributes, and the values of the attributes that have a fixed set."""

    dimensions: dict[str, frozenset[str]]  # metric → attribute names
    values: dict[str, frozenset[str]]  # attribute → every value it takes


@pytest.fixture
def sent(emitted) -> Telemetry:
    names = {name for name, _ in emitted}
    assert names == set(telemetry.METRIC_NAMES), "a metric of METRIC_NAMES is not recorded by the paths emitted() runs"
    dimensions = {name: frozenset(k for n, a in emitted if n == name for k in a) for name in names}
    # result, outcome, kind: as recorded; timers and figures: every one the code has, not just those emitted() ran
    values = {key: frozenset(a[key] for _, a in emitted if key in a) for key in ("result", "outcome", "kind")}
    values["timer"] = frozenset(TIMERS)
    values["figure"] = frozenset(f for summary in SUMMARIES for f in figures_of(summary()) if f != "seconds")
    return Telemetry(dimensions, values)


# --- reading KQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "string" (text: its value), "number", "op"
    text: str


_OPERATORS = ("==", "!=", "=~", "!~", "<=", ">=", "=>", "..")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9.]*")


class KqlError(ValueError):
    """Text the lexer cannot read (an unterminated string)."""


def _string(query: str, i: int) -> tuple[str, int]:
    """The value of the string literal at ``i`` (``'…'``, ``"…"``, ``@'…'``, ``h"…"``, ```` ```…``` ````) and its end."""
    if query.startswith("```", i):
        end = query.find("```", i + 3)
        if end < 0:
            raise KqlError(f"unterminated ``` string at {i}")
        return query[i + 3 : end], end + 3
    verbatim = query[i] == "@"
    if query[i] in "@hH":
        i += 1
    quote, i, value = query[i], i + 1, []
    while i < len(query):
        ch = query[i]
        if verbatim and ch == quote and query.startswith(quote * 2, i):
            value.append(quote)
            i += 2
        elif ch == quote:
            return "".join(value), i + 1
        elif ch == "\\" and not verbatim and i + 1 < len(query):
            value.append(query[i + 1])
            i += 2
        elif ch == "\n":
            break
        else:
            value.append(ch)
            i += 1
    raise KqlError(f"unterminated string in {query!r}")


def tokens(query: str) -> list[Token]:
    """The tokens of a KQL query, comments left out."""
    found, i = [], 0
    while i < len(query):
        ch = query[i]
        if ch.isspace():
            i += 1
        elif query.startswith("//", i):
            end = query.find("\n", i)
            i = len(query) if end < 0 else end
        elif ch in "'\"" or query.startswith("```", i) or (ch in "@hH" and query[i + 1 : i + 2] in ("'", '"')):
            value, i = _string(query, i)
            found.append(Token("string", value))
        elif match := _NAME.match(query, i):
            found.append(Token("name", match.group()))
            i = match.end()
        elif match := _NUMBER.match(query, i):
            found.append(Token("number", match.group()))
            i = match.end()
        else:
            op = next((op for op in _OPERATORS if query.startswith(op, i)), ch)
            found.append(Token("op", op))
            i += len(op)
    return found


def _is(token: Token | None, kind: str, text: str | None = None) -> bool:
    return token is not None and token.kind == kind and (text is None or token.text == text)


def _at(found: list[Token], i: int) -> Token | None:
    return found[i] if 0 <= i < len(found) else None


def _closing(found: list[Token], i: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``i`` (or the end)."""
    depth = 0
    for j in range(i, len(found)):
        if _is(found[j], "op", "("):
            depth += 1
        elif _is(found[j], "op", ")"):
            depth -= 1
            if depth == 0:
                return j
    return len(found)


# operators and functions that read data from elsewhere than the tables the query names
READERS = {"table", "app", "workspace", "resource", "cluster", "database", "externaldata", "external_table",
           "materialized_view", "search", "find", "evaluate", "let"}
TABLE_OPERATORS = {"union", "join", "lookup"}


def tables_read(query: str) -> list[str]:
    """The tables a query reads: its first word, and what each ``union``/``join``/``lookup`` adds (names that are
    no table, like ``let`` or ``table``, come back as they are, for the check to refuse)."""
    found = tokens(query)
    tables = []
    if found and not (_is(found[0], "name") and found[0].text in TABLE_OPERATORS):
        tables.append(found[0].text)
    for i, token in enumerate(found):
        if not (_is(token, "name") and token.text in TABLE_OPERATORS):
            continue
        j = i + 1
        while _is(_at(found, j), "name") and _is(_at(found, j + 1), "op", "="):  # kind=inner, withsource=T ...
            j += 3
        while j < len(found):
            operand = found[j]
            if _is(operand, "op", "("):  # a query in parentheses: its first word (its own unions are found anyway)
                inner = _at(found, j + 1)
                tables.append(inner.text if inner else "(")
                j = _closing(found, j) + 1
            else:
                tables.append(operand.text)
                j += 1
            if token.text != "union" or not _is(_at(found, j), "op", ","):
                break
            j += 1
    return tables


_INEXACT = {"=~", "!=", "!~", "!", "has", "has_cs", "has_any", "has_all", "hasprefix", "hassuffix", "contains",
            "contains_cs", "startswith", "startswith_cs", "endswith", "endswith_cs", "matches", "like", "between"}


def _compared(found: list[Token], j: int) -> tuple[list[str], str]:
    """What the comparison starting at ``found[j]`` compares with: (string literals, problem or "")."""
    op = _at(found, j)
    if _is(op, "op", "=="):
        value = _at(found, j + 1)
        return ([value.text], "") if _is(value, "string") else ([], "compared with something else than a string")
    if _is(op, "name", "in") and _is(_at(found, j + 1), "op", "("):
        inside = found[j + 2 : _closing(found, j + 1)]
        values = [t.text for t in inside if _is(t, "string")]
        others = [t for t in inside if not (_is(t, "string") or _is(t, "op", ","))]
        return values, ("compared with something else than strings" if others else "")
    if op is not None and op.text in _INEXACT | {"in"}:
        return [], f"compared with {op.text} {_at(found, j + 1).text if _at(found, j + 1) else ''}, not == or in"
    return [], ""


def metric_names(query: str) -> tuple[list[str], list[str]]:
    """The metric names ``name`` is compared with (``name == "…"``, ``name in ("…", …)``) and the problems."""
    found = tokens(query)
    names, problems = [], []
    for i, token in enumerate(found):
        if not _is(token, "name", "name") or _is(_at(found, i - 1), "op", "."):
            continue
        if _is(_at(found, i + 1), "op", "="):
            problems.append("`name =` redefines the metric name")
            continue
        values, problem = _compared(found, i + 1)
        names += values
        if problem:
            problems.append(f"metric name {problem}")
    return names, problems


@dataclass(frozen=True)
class DimensionUse:
    key: str
    compared_with: tuple[str, ...]  # the string literals it is compared with (== != =~ in …), if any


def dimensions_used(query: str) -> tuple[list[DimensionUse], list[str]]:
    """Every ``customDimensions.<key>`` (or ``customDimensions['<key>']``) read, with the literals it is compared
    with (directly or through ``tostring(...)``); and the problems (a computed key)."""
    found = tokens(query)
    uses, problems = [], []
    for i, token in enumerate(found):
        if not _is(token, "name", "customDimensions"):
            continue
        after = _at(found, i + 1)
        if _is(after, "op", ".") and _is(_at(found, i + 2), "name"):
            key, end = found[i + 2].text, i + 3
        elif _is(after, "op", "[") and _is(_at(found, i + 2), "string") and _is(_at(found, i + 3), "op", "]"):
            key, end = found[i + 2].text, i + 4
        elif _is(after, "op", "[") or _is(after, "op", "."):
            problems.append("customDimensions read by a computed key")
            continue
        else:  # customDimensions as a whole: no attribute in particular
            continue
        if _is(_at(found, i - 1), "op", "(") and _is(_at(found, i - 2), "name", "tostring") and _is(
            _at(found, end), "op", ")"
        ):
            end += 1
        op = _at(found, end)
        literals: list[str] = []
        if op is not None and op.text in ("==", "!=", "=~", "!~"):
            literals = [found[end + 1].text] if _is(_at(found, end + 1), "string") else []
        elif _is(op, "name", "in") or (_is(op, "op", "!") and _is(_at(found, end + 1), "name", "in")):
            start = end + (1 if op.text == "in" else 2)
            if _is(_at(found, start), "op", "~"):
                start += 1
            if _is(_at(found, start), "op", "("):
                literals = [t.text for t in found[start + 1 : _closing(found, start)] if _is(t, "string")]
        uses.append(DimensionUse(key, tuple(literals)))
    return uses, problems


def check_query(query: str, sent: Telemetry) -> list[str]:
    """Problems of one query: what it reads that the functions do not send."""
    try:
        found = tokens(query)
    except KqlError as e:
        return [str(e)]
    problems = [f"reads table {table!r}" for table in tables_read(query) if table not in TABLES]
    problems += [f"reads data with {t.text}" for t in found if _is(t, "name") and t.text in READERS]
    names, name_problems = metric_names(query)
    problems += name_problems
    problems += [f"metric {name!r} is not one the functions send" for name in names if name not in sent.dimensions]
    problems += [f"string {t.text!r} looks like a metric the functions do not send" for t in found
                 if _is(t, "string") and t.text.startswith("aca.") and t.text not in sent.dimensions]
    tables = set(tables_read(query))
    if "customMetrics" in tables and not names:
        problems.append("reads customMetrics without choosing metrics by name")
    allowed = {telemetry.REQUEST_ID} if "traces" in tables else set()
    for name in names:
        allowed |= sent.dimensions.get(name, frozenset())
    uses, dimension_problems = dimensions_used(query)
    problems += dimension_problems
    for use in uses:
        if use.key not in allowed:
            problems.append(f"customDimensions.{use.key} is no attribute of {sorted(set(names)) or sorted(tables)}")
        problems += [f"customDimensions.{use.key} is never {value!r}" for value in use.compared_with
                     if use.key in sent.values and value not in sent.values[use.key]]
    return problems


# --- the checker finds what is wrong ---------------------------------------------------------------


def test_the_lexer_reads_strings_comments_and_placeholders():
    query = """customMetrics // union requests
| where name == "aca.start.duration" and message has 'join \\'requests\\'' and x == @'it''s'
| summarize by bin(timestamp, {TimeRange:grain})"""
    texts = [t.text for t in tokens(query)]
    assert "union" not in texts and "requests" not in texts
    assert "join 'requests'" in texts and "it's" in texts
    assert texts[-6:] == ["{", "TimeRange", ":", "grain", "}", ")"]
    with pytest.raises(KqlError):
        tokens("traces | where message == 'open")


@pytest.mark.parametrize(
    ("query", "tables"),
    [
        ("customMetrics | take 1", ["customMetrics"]),
        ("customMetrics | join kind=inner (requests | take 1) on operation_Id", ["customMetrics", "requests"]),
        ("customMetrics | join kind = leftouter exceptions on operation_Id", ["customMetrics", "exceptions"]),
        ("union withsource=T traces, (dependencies | take 1), pageViews | take 1", ["traces", "dependencies",
                                                                                      "pageViews"]),
        ("traces | union (customEvents | union requests)", ["traces", "customEvents", "requests"]),
        ("traces | lookup (customMetrics | take 1) on x", ["traces", "customMetrics"]),
        ("let t = requests; t", ["let"]),
        ('table("requests") | take 1', ["table"]),
    ],
)
def test_tables_read(query, tables):
    assert tables_read(query) == tables


DURATION = '| where name == "aca.start.duration"'
FAILURES = '| where name == "aca.start.failures"'


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (f"requests {DURATION}", "reads table 'requests'"),
        (f"customMetrics {DURATION} | join kind=inner (requests | take 1) on operation_Id", "'requests'"),
        (f"customMetrics {FAILURES} | union exceptions, traces", "reads table 'exceptions'"),
        (f"customMetrics {FAILURES} | union (dependencies | take 1)", "reads table 'dependencies'"),
        (f'customMetrics {FAILURES} | union (app("other").customMetrics)', "reads data with app"),
        ("let t = customMetrics; t | where name == 'aca.start.failures'", "reads data with let"),
        ("search \"aca.start.failures\"", "reads data with search"),
        ('customMetrics | where name == "aca.start.duraton"', "metric 'aca.start.duraton' is not one"),
        ('customMetrics | where name in ("aca.timer.runs", "aca.timer.rns")', "metric 'aca.timer.rns' is not one"),
        ('customMetrics | where name startswith "aca."', "metric name compared with startswith"),
        ('customMetrics | where name =~ "aca.start.failures"', "metric name compared with =~"),
        ('customMetrics | where name in~ ("aca.start.failures")', "metric name compared with in ~"),
        ("customMetrics | where name == strcat('aca.', 'timer.runs')", "compared with something else"),
        ('customMetrics | extend name = "aca.timer.runs"', "redefines the metric name"),
        ("customMetrics | summarize sum(value)", "without choosing metrics by name"),
        ('customMetrics | where valueCount > 0 and name == "aca.start.failure"', "'aca.start.failure' is not one"),
        (f"customMetrics {FAILURES} | extend n = iff(true, 'aca.start.failure', '')", "looks like a metric"),
        (f"customMetrics {FAILURES} | summarize sum(value) by tostring(customDimensions.error_code)",
         "customDimensions.error_code is no attribute"),
        ('customMetrics | where name == "aca.environment.servers" and customDimensions.kind == "used"',
         "customDimensions.kind is no attribute of ['aca.environment.servers']"),
        ('customMetrics | where name == "aca.timer.runs" | where tostring(customDimensions.result) == "error"',
         "customDimensions.result is never 'error'"),
        ("customMetrics | where name == \"aca.timer.items\" and customDimensions['figure'] == \"culls\"",
         "customDimensions.figure is never 'culls'"),
        ('customMetrics | where name == "aca.timer.runs" | where customDimensions.timer in ("aca-culler")',
         "customDimensions.timer is never 'aca-culler'"),
        ('customMetrics | where name == "aca.start.duration" | where customDimensions.outcome !in ("ok")',
         "customDimensions.outcome is never 'ok'"),
        ('customMetrics | where name == "aca.timer.runs" | where customDimensions[k] == "x"', "computed key"),
        ("traces | where customDimensions.requestId == '{RequestId}'", "customDimensions.requestId is no attribute"),
        ("traces | where customDimensions.timer == 'aca-reconciler'", "customDimensions.timer is no attribute"),
        ("traces | where message == 'open", "unterminated string"),
    ],
)
def test_a_query_reading_what_the_functions_do_not_send_is_refused(query, problem, sent):
    problems = check_query(query, sent)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "query",
    [
        f"customMetrics {FAILURES} | where message has 'join requests' // | union requests",
        'customMetrics | where name in ("aca.timer.runs", "aca.timer.items") | where customDimensions.timer == '
        '"aca-warm-pool" and tostring(customDimensions.figure) in ("created", "retired")',
        'customMetrics | where name == "aca.environment.cores" | summarize max(value) by tostring(customDimensions.'
        'environment), tostring(customDimensions.kind)',
        "traces | where tostring(customDimensions.request_id) == '{RequestId}' | order by timestamp asc",
    ],
)
def test_a_query_reading_what_the_functions_send_passes(query, sent):
    assert check_query(query, sent) == []


def test_the_telemetry_the_functions_send(sent):
    """What the checks compare with, found by running the functions' code (a sanity check of ``emitted``)."""
    assert sent.dimensions[telemetry.START_DURATION] == {"outcome", "code"}
    assert sent.dimensions[telemetry.TIMER_ITEMS] == {"timer", "figure"}
    assert sent.values["result"] == {"ok", "errors"} and sent.values["kind"] == {"used", "budget"}
    assert {"culled", "deleted", "marked_failed", "created", "retired"} <= sent.values["figure"]
    assert telemetry.REQUEST_ID == "request_id"


# --- the workbook -----------------------------------------------------------------------------------


def workbook() -> dict[str, Any]:
    return json.loads(WORKBOOK_JSON.read_text())


def query_items(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in content["items"] if item["type"] == 3]


def parameters(content: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for item in content["items"] if item["type"] == 9 for p in item["content"]["parameters"]}


def test_workbook_is_a_notebook():
    content = workbook()
    assert content["version"] == "Notebook/1.0"
    assert query_items(content), "no query"
    names = [item["name"] for item in content["items"]]
    assert len(names) == len(set(names)), "item names must be unique"


def test_query_items_are_application_insights_queries():
    for item in query_items(workbook()):
        query = item["content"]
        assert query["version"] == "KqlItem/1.0", item["name"]
        assert query["queryType"] == 0, item["name"]  # logs (KQL)
        assert query["resourceType"] == COMPONENTS, item["name"]
        assert query["visualization"] in VISUALIZATIONS, item["name"]
        assert query["timeContextFromParameter"] == "TimeRange", item["name"]
        assert "{TimeRange}" in query["query"], item["name"]


def test_queries_read_only_what_the_functions_send(sent):
    problems = {item["name"]: check_query(item["content"]["query"], sent) for item in query_items(workbook())}
    assert {name: found for name, found in problems.items() if found} == {}


def test_every_metric_the_functions_send_is_shown():
    shown = {name for item in query_items(workbook()) for name in metric_names(item["content"]["query"])[0]}
    assert set(telemetry.METRIC_NAMES) - shown == set()


def test_placeholders_name_parameters():
    content = workbook()
    declared_names = set(parameters(content))
    assert {"TimeRange", "RequestId"} <= declared_names
    for item in query_items(content):
        for field in ("query", "title"):
            used = set(re.findall(r"\{([A-Za-z_]\w*)(?::\w+)?\}", item["content"].get(field, "")))
            assert used <= declared_names, (item["name"], field, used - declared_names)


def test_time_range_parameter():
    time_range = parameters(workbook())["TimeRange"]
    assert time_range["type"] == 4 and time_range["isRequired"] is True
    assert time_range["value"]["durationMs"] in {v["durationMs"] for v in time_range["typeSettings"]["selectableValues"]}


def test_request_id_shows_that_requests_log_lines_in_order(sent):
    content = workbook()
    request_id = parameters(content)["RequestId"]
    assert request_id["type"] == 1  # a text box
    (rule,) = request_id["typeSettings"]["paramValidationRules"]
    assert rule["match"] is True
    from acaspawner.contract import request_id as request_id_of

    accepted = re.compile(rule["regExp"])
    assert accepted.search(request_id_of("0123456789abcdef0123456789abcdef")) and accepted.search("")
    assert not accepted.search("x' or true or '") and not accepted.search("not-a-guid")
    (item,) = [i for i in query_items(content) if "{RequestId}" in i["content"]["query"]]
    query = item["content"]["query"]
    assert tables_read(query) == ["traces"]
    uses, _ = dimensions_used(query)
    assert DimensionUse("request_id", ("{RequestId}",)) in uses
    assert re.search(r"\|\s*order by timestamp asc\s*$", query)
    assert item["conditionalVisibility"] == {"parameterName": "RequestId", "comparison": "isNotEqualTo", "value": ""}


# --- the Bicep ----------------------------------------------------------------------------------------


def test_workbook_module_deploys_the_json_as_a_shared_workbook_of_app_insights():
    tree = parse_file(WORKBOOK_BICEP)
    [(name, book)] = resources(tree, WORKBOOK_TYPE).items()
    assert declared(tree, "resource")[name]["api_version"] == "2023-06-01"
    assert book["kind"] == "shared"
    assert book["location"] == Ref("location") and book["tags"] == Ref("tags")
    # deterministic: a deployment updates the workbook instead of adding one
    assert isinstance(book["name"], Call) and book["name"].name == "guid"
    assert not any(isinstance(v, Call) and v.name in ("new_guid", "utc_now") for v in walk(book["name"]))
    properties = book["properties"]
    assert properties["category"] == "workbook"
    assert properties["sourceId"] == Ref("appInsightsId")
    assert properties["displayName"] == Ref("displayName")
    assert properties["version"] == workbook()["version"]
    assert properties["serializedData"] == expression("string(content)")
    assert variable(tree, "content") == expression("union(loadJsonContent('workbook.json'), resourceContext)")
    assert variable(tree, "resourceContext") == {"fallbackResourceIds": [Ref("appInsightsId")]}
    display = {p.name: p for p in params(WORKBOOK_BICEP.read_text())}["displayName"]
    assert display.default == "JupyterHub on Container Apps"


def test_main_deploys_the_workbook_over_app_insights():
    tree = parse_file(MAIN_BICEP)
    module = declared(tree, "module")["workbook"]
    assert module["detail"]["path"] == "modules/workbook.bicep"
    assert module["config"]["scope"] == Ref("hubGroup")
    assert module_params(tree, "workbook") == {
        "location": Ref("location"),
        "tags": Ref("allTags"),
        "appInsightsId": expression("monitoring.outputs.appInsightsId"),
    }
    assert output(parse_file(MONITORING_BICEP), "appInsightsId") == expression("appInsights.id")
    assert "appInsights" in resources(parse_file(MONITORING_BICEP), "Microsoft.Insights/components")
