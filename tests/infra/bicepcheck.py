"""The Bicep of infra/, read through pycep-parser, to check what infra/ sets without the Bicep compiler.

``parse`` turns a file into the tree of pycep-parser (0.7.1, the Bicep parser of
Checkov; ``pycep.BicepParser``): sections ``parameters``, ``variables``,
``resources``, ``modules``, ``outputs`` (and ``types``, ``functions``, ``imports``
...), each a dict of declarations by name whose attributes are pycep's:
``decorators`` (``[{"type": "secure"}, {"type": "min_length", "argument": 16}]``),
``type`` and ``default`` of a parameter, ``value`` of a variable or output,
``type``/``api_version``/``existing``/``config`` of a resource, ``detail``
(the path) and ``config`` of a module, ``__start_line__``/``__end_line__``.
Values are normalised so that checks can compare them:

- a reference to a declaration (a bare identifier) is a ``Ref``, a string
  literal a ``str`` (pycep marks references with a ``str`` subclass only, equal
  to the literal of the same text); quoted object keys lose their quotes;
- an operator (``a.b``, ``a['x']``, ``c ? x : y``, ``!a`` ...) is an ``Op``, a
  function call a ``Call`` (pycep's snake_case names and named arguments:
  ``Call("subscription_resource_id", {"resource_type": ..., ...})``), a ``for``
  expression a ``Loop``, a conditional resource or module body (``= if (c) {``)
  an ``If``; plain dicts and lists are then object and array literals only;
- ``expression("hubGroup.id")`` parses an expression the same way, to compare with.

Interpolated strings stay the text between the quotes (``'http://${name}:8081'``).
The checks return lists of problems (empty = fine) so that they can be tested on
small snippets, and fail loudly on the real files.

What pycep 0.7.1 reads (tried on snippets; none of the unreadable forms is in
infra/, and ``test_pycep_reads_every_bicep_file`` fails as soon as one is):

- read: ``resource ... existing = {``, ``= if (c) {``, decorators (also spread
  over lines, or separated from the declaration by comments),
  ``loadJsonContent(...)`` and ``fail('...')`` (``Call``s), single-parameter lambdas
  (``x => ...``), user-defined types (``type t = {...}``, ``'a' | 'b'``),
  ``import``/``@export()``/``func``, ``string[]``, ``targetScope``,
  ``metadata``, ``'''`` strings, ``#disable-next-line``.
- a syntax error (``BicepSyntaxError``): multi-parameter lambdas
  (``(acc, x) => ...``), the spread operator (``...obj``), decorators on the
  members of a user-defined type, literal or object types of a parameter
  (``param p 'a' | 'b'``, ``param p {...}``), ``resource``-typed parameters,
  ``assert``, a line break inside parentheses or before the ``?``/``:`` of a
  ternary, a loop filter written ``if (c)`` with a space (``if(c)`` is read),
  a ``//`` comment on a last line without a newline, and an odd number of
  ``'''`` anywhere, comments included ("Text is invalid").
- read but lost: the nullable ``?`` of a type and the ``!`` and ``.?``/``[?]``
  of an expression (``a!`` reads as ``a``), a union type's quotes
  (``'a' | 'b'`` reads as ``"a | b"``), and the difference between a
  ``= null`` default and none (``Param.has_default`` is then False). Of the
  ``resource`` declarations nested in one resource body only the last is kept:
  ``test_pycep_reads_every_bicep_file`` compares the declarations of the tree
  with those of the text, so a lost one fails there.
- read wrongly: operators have no precedence and group to the right
  (``!a && b`` reads as ``!(a && b)``, ``a * b + c`` as ``a * (b + c)``,
  ``a.b == c`` as ``a.(b == c)``). Compare such values with ``expression()``
  of the same text (grouped the same way) or look at the identifiers in them
  (``walk``), which are all there. ``evaluate`` (what a parameter value makes
  of loops, ``range``, ``cidrSubnet``, interpolations ...) computes an operator
  only when none of its operands is an operator, so a misread grouping is left
  alone, never computed.
- ambiguous in pycep's output, read as pycep's marker: an object literal whose
  only key is ``operator`` or ``function`` or whose keys are exactly
  ``loop_type``, ``condition``, ``config``, and a resource or module body
  whose keys are exactly ``condition`` and ``config``.

The fallback when infra/ needs such a construct: the tests fail (a
``BicepSyntaxError`` with the file and line, or the declaration comparison),
never skip. Write the construct in a form pycep reads (a one-line ternary,
``if(c)``, an intermediate ``var`` instead of a spread), or check that part with
a text assertion on ``strip_comments(text)``, the one hand-written lexer left
here (pycep drops comments, which a text assertion must not see; the role table
check also reads the comment that names the role of a GUID).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark.exceptions import LarkError, UnexpectedInput
from pycep import BicepParser
from pycep.models import BicepElement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SECRET_WORDS = re.compile(r"key|secret|password|token", re.IGNORECASE)
ROLE_TABLE_VARIABLE = "builtinRoles"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
CONTAINER_APPS = "Microsoft.App/containerApps"

Tree = dict[str, dict[str, dict[str, Any]]]
_SECTIONS = {
    "param": "parameters",
    "var": "variables",
    "resource": "resources",
    "module": "modules",
    "output": "outputs",
    "type": "types",
    "func": "functions",
}


class BicepSyntaxError(ValueError):
    """Bicep that pycep (or ``strip_comments``) cannot read."""


class DeploymentFailure(Exception):
    """``fail(message)`` reached while evaluating: ARM would stop the deployment with ``message``."""


# --- the tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A reference to a declaration (parameter, variable, resource, module, loop item)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Op:
    """An operator: pycep's ``type`` (``property_accessor``, ``conditional``, ``not`` ...) and named operands."""

    type: str
    operands: dict[str, Any]


@dataclass(frozen=True)
class Call:
    """A function call: pycep's snake_case ``name`` and its named arguments (``None`` for an absent one)."""

    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Loop:
    """``[for item in source: if(condition) body]`` (``index`` set for ``for (item, index) in``)."""

    item: str
    index: str | None
    source: Any
    condition: Any
    body: Any


@dataclass(frozen=True)
class If:
    """A conditional resource or module: ``= if (condition) body``."""

    condition: Any
    body: dict[str, Any]


_LOOP_KEYS = {"loop_type", "condition", "config"}


def _normalise(value: Any) -> Any:
    """pycep's value with ``Ref``/``Op``/``Call``/``Loop`` in place of its marker types and dicts."""
    if isinstance(value, BicepElement):
        return Ref(str(value))
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"operator"} and isinstance(value["operator"], dict):
        operator = value["operator"]
        return Op(operator["type"], {k: _normalise(v) for k, v in operator["operands"].items()})
    if value.keys() == {"function"} and isinstance(value["function"], dict):
        function = value["function"]
        return Call(function["type"], {k: _normalise(v) for k, v in function.get("parameters", {}).items()})
    if value.keys() == _LOOP_KEYS and isinstance(value["loop_type"], dict):
        detail = value["loop_type"]["detail"]
        source = detail.get("array_name", detail.get("object_name"))
        if value["loop_type"]["type"] == "object":  # pycep gives the name of ``items(name)`` as text
            source = Call("items", {"arg_1": Ref(str(source))})
        return Loop(
            item=detail["item_name"],
            index=detail.get("index_name"),
            source=_normalise(source),
            condition=_normalise(value["condition"]),
            body=_normalise(value["config"]),
        )
    # pycep keeps the quotes of a quoted key: ``'azd-service-name'``
    return {_unquote(k): _normalise(v) for k, v in value.items()}


def _unquote(key: str) -> str:
    """An object key without the quotes pycep keeps."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def _normalise_body(config: dict[str, Any]) -> Any:
    """A resource or module body: an object, an ``If`` or a ``Loop``."""
    if config.keys() == {"condition", "config"}:
        return If(_normalise(config["condition"]), _normalise(config["config"]))
    return _normalise(config)


def _normalise_tree(raw: dict[str, Any]) -> Tree:
    """pycep's tree with every value, body and decorator argument normalised."""
    tree: Tree = {}
    for section, declarations in raw.items():
        if section == "globals":
            tree[section] = declarations
            continue
        tree[section] = {}
        for name, attributes in declarations.items():
            attributes = dict(attributes)
            for key in ("default", "value"):
                if key in attributes:
                    attributes[key] = _normalise(attributes[key])
            if "config" in attributes:
                attributes["config"] = _normalise_body(attributes["config"])
            attributes["decorators"] = [_normalise(d) for d in attributes.get("decorators", [])]
            tree[section][name] = attributes
    return tree


_PARSER = BicepParser(add_line_numbers=True)


@lru_cache(maxsize=64)
def parse(text: str, where: str = "<bicep>") -> Tree:
    """The normalised pycep tree of a Bicep file (shared between callers: read it, do not change it)."""
    try:
        raw = _PARSER.parse(text=text)
    except UnexpectedInput as e:
        line = text.splitlines()[e.line - 1] if 0 < e.line <= len(text.splitlines()) else ""
        raise BicepSyntaxError(f"{where}:{e.line}:{e.column}: pycep cannot parse {line.strip()!r}") from e
    except (LarkError, ValueError) as e:
        raise BicepSyntaxError(f"{where}: pycep cannot parse it: {e}") from e
    return _normalise_tree(raw)


def parse_file(path: Path) -> Tree:
    """``parse`` of a file (problems name it relative to the repository)."""
    where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return parse(path.read_text(), where)


def expression(source: str) -> Any:
    """The normalised value of a Bicep expression, to compare with values of a tree."""
    return parse(f"var expression = {source}\n", "<expression>")["variables"]["expression"]["value"]


def declared(tree: Tree, kind: str) -> dict[str, dict[str, Any]]:
    """Declarations of a ``kind`` (``param``, ``var``, ``resource``, ``module``, ``output``, ``type``, ``func``) by name."""
    return tree.get(_SECTIONS[kind], {})


def _declaration(tree: Tree, kind: str, name: str) -> dict[str, Any]:
    """The attributes of ``kind name``."""
    try:
        return declared(tree, kind)[name]
    except KeyError:
        raise LookupError(f"no `{kind} {name}`") from None


def variable(tree: Tree, name: str) -> Any:
    """The value of ``var name``."""
    return _declaration(tree, "var", name)["value"]


def output(tree: Tree, name: str) -> Any:
    """The value of ``output name``."""
    return _declaration(tree, "output", name)["value"]


def body(config: Any) -> Any:
    """The object of a resource or module body, past ``if (...)`` and ``[for ...]``."""
    while isinstance(config, If | Loop):
        config = config.body
    return config


def resource(tree: Tree, name: str) -> dict[str, Any]:
    """The body of ``resource name``."""
    return body(_declaration(tree, "resource", name)["config"])


def resources(tree: Tree, type_: str | None = None, *, existing: bool = False) -> dict[str, dict[str, Any]]:
    """Bodies of the resources (of ``type_``, without API version) the file deploys (``existing`` ones too if asked)."""
    return {
        name: body(attributes["config"])
        for name, attributes in declared(tree, "resource").items()
        if (type_ is None or attributes["type"] == type_) and (existing or not attributes["existing"])
    }


def resource_types(tree: Tree) -> dict[str, str]:
    """``type@apiVersion`` of every resource by name."""
    return {name: f"{a['type']}@{a['api_version']}" for name, a in declared(tree, "resource").items()}


def module_params(tree: Tree, name: str) -> dict[str, Any]:
    """What ``module name`` passes to its parameters."""
    return body(_declaration(tree, "module", name)["config"]).get("params", {})


def get(value: Any, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...`` through objects and arrays, with the path in the error."""
    for i, key in enumerate(path):
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise LookupError(f"no {'.'.join(map(str, path[: i + 1]))}") from None
    return value


def resolve(tree: Tree, value: Any) -> Any:
    """``value``, or the value of the variable it references (repeatedly)."""
    seen = set()
    variables = declared(tree, "var")
    while isinstance(value, Ref) and value.name in variables and value.name not in seen:
        seen.add(value.name)
        value = variables[value.name]["value"]
    return value


def walk(value: Any) -> Iterator[Any]:
    """``value`` and everything inside it (objects, arrays, operands, arguments, loops)."""
    yield value
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    elif isinstance(value, Op):
        children = list(value.operands.values())
    elif isinstance(value, Call):
        children = list(value.args.values())
    elif isinstance(value, Loop):
        children = [value.source, value.condition, value.body]
    elif isinstance(value, If):
        children = [value.condition, value.body]
    else:
        children = []
    for child in children:
        yield from walk(child)


def walk_tree(tree: Tree) -> Iterator[Any]:
    """Every value of every declaration: defaults, values, bodies, decorator arguments."""
    for section, declarations in tree.items():
        if section == "globals":
            continue
        for attributes in declarations.values():
            for key in ("default", "value", "config", "decorators"):
                if key in attributes:
                    yield from walk(attributes[key])


def objects(value: Any) -> Iterator[dict[str, Any]]:
    """The object literals in ``value``."""
    return (v for v in walk(value) if isinstance(v, dict))


_BINARY = {
    "and": "&&",
    "or": "||",
    "coalesce": "??",
    "equals": "==",
    "not_equals": "!=",
    "greater_than": ">",
    "greater_than_or_equals": ">=",
    "less_than": "<",
    "less_than_or_equals": "<=",
    "add": "+",
    "substract": "-",  # sic, pycep's name
    "multiply": "*",
    "divide": "/",
    "modulo": "%",
}


def render(value: Any) -> str:
    """Bicep-like text of a value, for messages and summaries (not the source's text: no comments, no layout)."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Op):
        o = value.operands
        if value.type == "property_accessor":
            return f"{render(o['operand_1'])}.{render(o['operand_2'])}"
        if value.type == "index_accessor":
            return f"{render(o['operand_1'])}[{render(o['operand_2'])}]"
        if value.type == "conditional":
            return f"{render(o['condition'])} ? {render(o['true_value'])} : {render(o['false_value'])}"
        if value.type in _BINARY:
            return f"({render(o['operand_1'])} {_BINARY[value.type]} {render(o['operand_2'])})"
        if value.type in ("not", "minus"):
            return ("!" if value.type == "not" else "-") + render(next(iter(o.values())))
        return f"{value.type}({', '.join(render(v) for v in o.values())})"
    if isinstance(value, Call):
        name = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), value.name)  # pycep's snake_case, back
        return f"{name}({', '.join(render(v) for v in value.args.values() if v is not None)})"
    if isinstance(value, Loop):
        return f"[for {value.item} in {render(value.source)}: {render(value.body)}]"
    return str(value)


# --- deploy-time values -----------------------------------------------------------------------

_ARITHMETIC = {
    "add": lambda a, b: a + b,
    "substract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
}
_LOGICAL = {
    "and": lambda a, b: a and b,
    "or": lambda a, b: a or b,
}
_COMPARISONS = {
    "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
    "greater_than": lambda a, b: a > b,
    "greater_than_or_equals": lambda a, b: a >= b,
    "less_than": lambda a, b: a < b,
    "less_than_or_equals": lambda a, b: a <= b,
}
# operators pycep groups to the right without precedence: nested in one another they are ambiguous
_GROUPED = set(_BINARY) | {"not", "minus", "conditional"}


def known(value: Any) -> bool:
    """``value`` holds no reference, operator, call or loop, and no interpolation in its strings."""
    return not any(
        isinstance(v, Ref | Op | Call | Loop | If) or (isinstance(v, str) and "${" in v) for v in walk(value)
    )


def _cidr_subnet(network: str, prefix: int, index: int) -> str:
    """Bicep's ``cidrSubnet(network, newCIDR, subnetIndex)``."""
    import ipaddress

    whole = ipaddress.ip_network(network, strict=False)
    if prefix < whole.prefixlen or not 0 <= index < 2 ** (prefix - whole.prefixlen):
        raise ValueError(f"cidrSubnet({network!r}, {prefix}, {index}): no such subnet")
    return str(ipaddress.ip_network((int(whole.network_address) + index * 2 ** (whole.max_prefixlen - prefix), prefix)))


def _call(name: str, args: list[Any]) -> Any:
    """A function of the few evaluated here (``_UNKNOWN`` for any other, or arguments it cannot take)."""
    import json

    if name == "range" and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        start, count = args
        if count < 0:
            raise ValueError(f"range({start}, {count}): a negative count fails the deployment")
        return list(range(start, start + count))
    if name == "concat" and args and all(isinstance(a, list) for a in args):
        return [item for a in args for item in a]
    if name == "concat" and args and all(isinstance(a, str) and known(a) for a in args):
        return "".join(args)
    if name == "length" and len(args) == 1 and isinstance(args[0], list | dict | str) and known(args[0]):
        return len(args[0])
    if name == "string" and len(args) == 1 and known(args[0]):
        return args[0] if isinstance(args[0], str) else json.dumps(args[0], separators=(",", ":"))
    if name in ("cidrSubnet", "cidr_subnet") and len(args) == 3 and known(args):
        return _cidr_subnet(*args)
    if name == "fail" and len(args) == 1 and isinstance(args[0], str) and known(args[0]):
        raise DeploymentFailure(args[0])
    return _UNKNOWN


_UNKNOWN = object()


def _interpolate(tree: Tree, text: str, bindings: dict[str, Any]) -> str:
    """``text`` with each ``${...}`` whose value is known replaced by it (the others kept as written)."""
    out, i = [], 0
    while (start := text.find("${", i)) >= 0:
        end = _skip_interpolation(text, start + 2)
        code = text[start + 2 : end - 1]
        value = evaluate(tree, expression(code), bindings)
        known_scalar = isinstance(value, int | str) and not isinstance(value, bool) and known(value)
        out += [text[i:start], str(value) if known_scalar else text[start:end]]
        i = end
    return "".join(out) + text[i:]


def evaluate(tree: Tree, value: Any, bindings: dict[str, Any] | None = None) -> Any:
    """``value`` with what is known before the deployment computed, the rest left as it is.

    ``bindings`` gives parameters (and names such as a module's loop variable) their
    values; a parameter without one takes its default, a variable its (evaluated)
    value if that is a literal, an object or an array. Computed: loops over a known
    array (``[for ...]`` becomes the list of its bodies), ``range``, ``concat``,
    ``length``, ``string``, ``cidrSubnet``, ``${...}`` interpolations, one arithmetic,
    comparison or logical operator (``&&``, ``||``, ``!``) between known operands,
    ``cond ? a : b`` with a known condition (only the branch taken, as ARM does),
    ``[...]`` and ``.name`` on known arrays and objects; ``fail(message)`` reached
    that way raises :class:`DeploymentFailure`. Left: references
    to resources, modules and their outputs, other functions, and every operator
    nested directly in another (pycep's grouping may not be the compiler's, see the
    module's docstring) — with the known parts inside computed, so that a loop's
    body per item reads like the text of that item (``network.outputs.ids[i]`` at
    ``i = 1`` is ``expression("network.outputs.ids[1]")``). ``known`` tells whether
    anything is left.
    """
    bindings = bindings or {}
    if isinstance(value, Ref):
        if value.name in bindings:
            return bindings[value.name]
        variables = declared(tree, "var")
        if value.name in variables:
            result = evaluate(tree, variables[value.name]["value"], bindings)
            return value if isinstance(result, Ref | Op | Call | Loop) else result
        parameter = declared(tree, "param").get(value.name)
        if parameter is not None and parameter.get("default") is not None:  # pycep: None for no default
            return evaluate(tree, parameter["default"], bindings)
        return value
    if isinstance(value, str):
        return _interpolate(tree, value, bindings) if "${" in value else value
    if isinstance(value, list):
        return [evaluate(tree, item, bindings) for item in value]
    if isinstance(value, dict):
        return {key: evaluate(tree, item, bindings) for key, item in value.items()}
    if isinstance(value, Call):
        args = {key: evaluate(tree, arg, bindings) for key, arg in value.args.items()}
        result = _call(value.name, [arg for arg in args.values() if arg is not None])
        return Call(value.name, args) if result is _UNKNOWN else result
    if isinstance(value, Loop):
        source = evaluate(tree, value.source, bindings)
        if not isinstance(source, list):
            return Loop(value.item, value.index, source, value.condition, value.body)
        items = []
        for index, item in enumerate(source):
            scope = {**bindings, value.item: item, **({value.index: index} if value.index else {})}
            if value.condition is not None:
                condition = evaluate(tree, value.condition, scope)
                if not isinstance(condition, bool):
                    raise LookupError(f"cannot tell the loop condition {render(value.condition)} of item {index}")
                if not condition:
                    continue
            items.append(evaluate(tree, value.body, scope))
        return items
    if isinstance(value, Op):
        return _operator(tree, value, bindings)
    return value


def _evaluate_unless_failing(tree: Tree, value: Any, bindings: dict[str, Any]) -> Any:
    """``evaluate``, or ``value`` as written where it would reach ``fail()`` (a branch that may never be taken)."""
    try:
        return evaluate(tree, value, bindings)
    except DeploymentFailure:
        return value


def _operator(tree: Tree, value: Op, bindings: dict[str, Any]) -> Any:
    nested = any(isinstance(o, Op) and o.type in _GROUPED for o in value.operands.values())
    if value.type == "conditional":
        # short-circuit, as ARM's if(): only the branch taken is evaluated (it may call fail())
        condition = evaluate(tree, value.operands["condition"], bindings)
        if not nested and isinstance(condition, bool):
            return evaluate(tree, value.operands["true_value" if condition else "false_value"], bindings)
        branches = {key: _evaluate_unless_failing(tree, value.operands[key], bindings)
                    for key in ("true_value", "false_value")}
        return Op(value.type, {"condition": condition, **branches})
    operands = {key: evaluate(tree, operand, bindings) for key, operand in value.operands.items()}
    residual = Op(value.type, operands)
    if value.type == "property_accessor":
        owner, key = operands["operand_1"], value.operands["operand_2"]
        if isinstance(owner, dict) and isinstance(key, Ref) and key.name in owner:
            return owner[key.name]
        return residual
    if value.type == "index_accessor":
        owner, key = operands["operand_1"], operands["operand_2"]
        if (
            isinstance(owner, list)
            and isinstance(key, int)
            and not isinstance(key, bool)
            and -len(owner) <= key < len(owner)
        ):
            return owner[key]
        if isinstance(owner, dict) and isinstance(key, str) and key in owner:
            return owner[key]
        return residual
    if nested or not known(list(operands.values())):
        return residual
    if value.type in _ARITHMETIC:
        a, b = operands["operand_1"], operands["operand_2"]
        if all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)):
            return _ARITHMETIC[value.type](a, b)
        return residual
    if value.type in _COMPARISONS:
        return _COMPARISONS[value.type](operands["operand_1"], operands["operand_2"])
    if value.type in _LOGICAL:
        a, b = operands["operand_1"], operands["operand_2"]
        return _LOGICAL[value.type](a, b) if isinstance(a, bool) and isinstance(b, bool) else residual
    if value.type == "not":
        (operand,) = operands.values()
        return (not operand) if isinstance(operand, bool) else residual
    return residual


def instances(tree: Tree, kind: str, name: str, bindings: dict[str, Any] | None = None) -> list[Any]:
    """The evaluated bodies a ``resource`` or ``module`` declaration deploys: one per loop item, none if its condition is false.

    LookupError when the loop's array or the condition is not known before the deployment.
    """
    config = _declaration(tree, kind, name)["config"]
    if isinstance(config, Loop):
        bodies = evaluate(tree, config, bindings)
        if not isinstance(bodies, list):
            raise LookupError(f"cannot tell how many of {kind} {name}: {render(config.source)}")
        return bodies
    if isinstance(config, If):
        condition = evaluate(tree, config.condition, bindings)
        if not isinstance(condition, bool):
            raise LookupError(f"cannot tell whether {kind} {name} is deployed: {render(config.condition)}")
        return [evaluate(tree, config.body, bindings)] if condition else []
    return [evaluate(tree, config, bindings)]


# --- parameters -------------------------------------------------------------------------------


@dataclass
class Param:
    """A ``param`` declaration."""

    name: str
    type: Any  # 'string', 'object' ..., or pycep's {"type": "array", "item_type": ...} for `string[]`
    decorators: list[dict[str, Any]] = field(default_factory=list)
    default: Any = None
    line: int = 0  # of the `param` keyword (pycep's start line is the first decorator's)

    @property
    def has_default(self) -> bool:
        return self.default is not None

    @property
    def secure(self) -> bool:
        return self.decorator("secure") is not None

    def decorator(self, kind: str) -> dict[str, Any] | None:
        """The decorator of pycep's ``kind`` (``secure``, ``min_length``, ``allowed``, ``description`` ...)."""
        return next((d for d in self.decorators if d["type"] == kind), None)


def params(text: str, where: str = "<bicep>") -> list[Param]:
    """Parameter declarations with their decorators."""
    code_lines = strip_comments(text).splitlines()
    found = []
    for name, attributes in declared(parse(text, where), "param").items():
        start, end = attributes["__start_line__"], attributes["__end_line__"]
        keyword = re.compile(rf"\s*param\s+{re.escape(name)}\b")
        line = next((n for n in range(start, end + 1) if keyword.match(code_lines[n - 1])), start)
        found.append(Param(name, attributes["type"], attributes["decorators"], attributes.get("default"), line))
    return found


# --- checks --------------------------------------------------------------------------------


def check_params(text: str, where: str = "") -> list[str]:
    """No ``@secure()`` parameter has a default; every secret-looking parameter is ``@secure()``."""
    problems = []
    for p in params(text, where or "<bicep>"):
        if p.secure and p.has_default:
            problems.append(f"{where}:{p.line}: @secure() parameter {p.name} has a default value")
        if SECRET_WORDS.search(p.name) and not p.secure:
            problems.append(f"{where}:{p.line}: parameter {p.name} looks secret but is not @secure()")
    return problems


def check_settings(bicep_text: str, required: set[str], forbidden: set[str] = frozenset()) -> list[str]:
    """Every ``required`` name is a key of ``var appSettings = {...}``; no ``forbidden`` one is."""
    settings = variable(parse(bicep_text), "appSettings")
    if not isinstance(settings, dict):
        raise LookupError(f"`var appSettings` is {render(settings)}, not an object literal")
    keys = set(settings)
    problems = [f"app setting {name} is not set by the Bicep" for name in sorted(required - keys)]
    problems += [f"app setting {name} must not be set in Azure" for name in sorted(forbidden & keys)]
    return problems


def _env_entries(tree: Tree, value: Any) -> Iterator[dict[str, Any]]:
    """The ``{ name: ..., value: ... }`` entries an ``env`` array can hold (variables and ``cond ? a : b`` followed)."""
    value = resolve(tree, value)
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _env_entries(tree, item)
    elif isinstance(value, Op) and value.type == "conditional":
        yield from _env_entries(tree, value.operands["true_value"])
        yield from _env_entries(tree, value.operands["false_value"])
    elif isinstance(value, Call) and value.name in ("concat", "union"):
        for arg in value.args.values():
            yield from _env_entries(tree, arg)
    else:
        raise LookupError(f"cannot tell the environment variables of {render(value)}")


def container_env(text: str) -> set[str]:
    """Names of the environment variables of the containers of the container apps the file deploys."""
    tree = parse(text)
    apps = resources(tree, CONTAINER_APPS)
    if not apps:
        raise LookupError(f"no {CONTAINER_APPS} resource")
    names = set()
    for app in apps.values():
        containers = resolve(tree, get(app, "properties", "template", "containers"))
        if not isinstance(containers, list):
            raise LookupError(f"cannot tell the containers of {render(containers)}")
        for container in containers:
            for entry in _env_entries(tree, container.get("env", [])):
                name = entry.get("name")
                if not isinstance(name, str) or "${" in name:
                    raise LookupError(f"environment variable named {render(name)}, not a literal")
                names.add(name)
    return names


def check_env(bicep_text: str, required: set[str], forbidden: set[str] = frozenset()) -> list[str]:
    """Every ``required`` name is an environment variable of the container app; no ``forbidden`` one is."""
    names = container_env(bicep_text)
    problems = [f"environment variable {name} is not set on the container app" for name in sorted(required - names)]
    problems += [f"environment variable {name} must not be set in Azure" for name in sorted(forbidden & names)]
    return problems


# --- roles --------------------------------------------------------------------------------------


def role_reference(value: Any) -> str | None:
    """The role named by ``builtinRoles['Name']`` or ``builtinRoles.Name``, else None."""
    if not (isinstance(value, Op) and value.operands.get("operand_1") == Ref(ROLE_TABLE_VARIABLE)):
        return None
    key = value.operands["operand_2"]
    if value.type == "index_accessor" and isinstance(key, str) and not isinstance(key, Ref):
        return key
    if value.type == "property_accessor":
        # pycep nests `a.b.c` to the right: (a, (b, c))
        while isinstance(key, Op) and key.type in ("property_accessor", "index_accessor"):
            key = key.operands["operand_1"]
        if isinstance(key, Ref):
            return key.name
    return None


def roles_referenced(value: Any) -> list[str]:
    """Every role of the table that ``value`` references."""
    return [name for v in walk(value) if (name := role_reference(v)) is not None]


def check_role_ids(text: str, table: dict[str, str], where: str = "") -> list[str]:
    """Role references name roles of the table; a literal GUID must be in the table under the name beside it."""
    problems = []
    for name in (name for value in walk_tree(parse(text, where)) if (name := role_reference(value)) is not None):
        if name not in table:
            problems.append(f"{where}: role {name!r} is not in infra/builtin-roles.json")
    # the name beside a GUID is usually a comment, which pycep does not keep: read the text
    by_id = {guid.lower(): name for name, guid in table.items()}
    lines = text.splitlines()
    for number, line in enumerate(strip_comments(text).splitlines(), start=1):
        for guid in GUID.findall(line):
            claimed = by_id.get(guid.lower())
            if claimed is None:
                problems.append(f"{where}:{number}: GUID {guid} is not a role of infra/builtin-roles.json")
            elif claimed.lower() not in lines[number - 1].lower():
                problems.append(f"{where}:{number}: GUID {guid} is {claimed!r}, which that line does not name")
    return problems


def _table_role_variables(tree: Tree) -> dict[str, str]:
    """Variables holding (an id built from) one role of the table: name → role."""
    found = {}
    for name, attributes in declared(tree, "var").items():
        roles = roles_referenced(attributes["value"])
        if len(set(roles)) == 1:
            found[name] = roles[0]
    return found


def _custom_role_id(tree: Tree, value: Any) -> str | None:
    """``<name>`` of ``<name>.id`` when ``<name>`` is a role definition of this file, else None."""
    custom = resources(tree, ROLE_DEFINITIONS, existing=True)
    if isinstance(value, Op) and value.type == "property_accessor" and value.operands["operand_2"] == Ref("id"):
        owner = value.operands["operand_1"]
        if isinstance(owner, Ref) and owner.name in custom:
            return owner.name
    return None


def _role_params(tree: Tree) -> set[str]:
    """``param <name>RoleId string``: the caller passes the id of a custom role (see the tests of main.bicep)."""
    return {name for name, a in declared(tree, "param").items() if name.endswith("RoleId") and a["type"] == "string"}


def role_of(tree: Tree, definition: Any) -> str | None:
    """The role a ``roleDefinitionId`` value stands for: a table role's name, a role parameter, a custom role; or None."""
    roles = roles_referenced(definition)
    if roles:
        return roles[0]
    if isinstance(definition, Ref):
        from_table = _table_role_variables(tree)
        if definition.name in from_table:
            return from_table[definition.name]
        if definition.name in _role_params(tree):
            return definition.name
    return _custom_role_id(tree, definition)


def role_definition_sources(text: str) -> list[str]:
    """Problems with ``roleDefinitionId`` values that come neither from the table nor from a custom role.

    A custom role is a ``roleDefinitions`` resource of the same file or a
    ``param <name>RoleId string`` (the caller passes the id of one).
    """
    tree = parse(text)
    problems = []
    for section in ("resources", "modules", "variables", "outputs"):
        for name, attributes in tree.get(section, {}).items():
            for obj in objects(attributes.get("config", attributes.get("value"))):
                if "roleDefinitionId" in obj and role_of(tree, obj["roleDefinitionId"]) is None:
                    value = render(obj["roleDefinitionId"])
                    problems.append(f"{name}: roleDefinitionId {value} is neither a table role nor a custom role")
    return problems


@dataclass(frozen=True)
class RoleAssignment:
    """A role assignment resource: the role, who gets it, and on what."""

    resource: str
    role: str  # a table role's name, a `<name>RoleId` parameter or a custom role resource
    principal: str
    scope: str  # the resource it is scoped to, or 'resourceGroup' (the deployment's scope)


def role_assignments(text: str) -> list[RoleAssignment]:
    """The role assignments a file deploys."""
    tree = parse(text)
    found = []
    for name, assignment in resources(tree, ROLE_ASSIGNMENTS).items():
        definition = get(assignment, "properties", "roleDefinitionId")
        role = role_of(tree, definition) or render(definition)
        principal = render(get(assignment, "properties", "principalId"))
        scope = render(assignment["scope"]) if "scope" in assignment else "resourceGroup"
        found.append(RoleAssignment(name, role, principal, scope))
    return found


# --- comments, for text assertions --------------------------------------------------------------


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal starting at ``text[i] == "'"``."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        if end < 0:
            raise BicepSyntaxError(f"unterminated ''' string at {i}")
        return end + 3
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch == "'":
            return i + 1
        elif text.startswith("${", i):
            i = _skip_interpolation(text, i + 2)
        elif ch == "\n":
            raise BicepSyntaxError(f"unterminated string before {i}")
        else:
            i += 1
    raise BicepSyntaxError("unterminated string")


def _skip_interpolation(text: str, i: int) -> int:
    """Index just past the ``}`` ending the interpolation whose code starts at ``i``."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i = _skip_string(text, i)
            continue
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            if depth == 0 and ch == "}":
                return i + 1
            depth -= 1
        i += 1
    raise BicepSyntaxError("unterminated interpolation")


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked (strings untouched, offsets kept)."""
    out = list(text)
    i = 0
    while i < len(text):
        if text[i] == "'":
            i = _skip_string(text, i)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BicepSyntaxError("unterminated comment")
            out[i : end + 2] = [ch if ch == "\n" else " " for ch in text[i : end + 2]]
            i = end + 2
        else:
            i += 1
    return "".join(out)


def top_level_declarations(text: str) -> dict[str, list[str]]:
    """Names declared in the text by keyword (``param``, ``var`` ...; ``resource`` also nested), in order.

    What pycep's tree must hold; compared by ``test_pycep_reads_every_bicep_file``.
    """
    code = strip_comments(text)
    found: dict[str, list[str]] = {}
    for kind in _SECTIONS:
        indent = r"[ \t]*" if kind == "resource" else ""
        found[kind] = re.findall(rf"^{indent}{kind}\s+([A-Za-z_]\w*)\b", code, re.MULTILINE)
    return found


# --- Python sources ---------------------------------------------------------------------------


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` (or a bare ``environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _reads_environment(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if _is_environ(sub):
            return True
        if isinstance(sub, ast.Attribute) and sub.attr == "getenv":
            return True
    return False


def environment_reads(source: str) -> set[str]:
    """Names a Python file reads from the environment.

    Direct reads (``os.environ[...]``, ``os.environ.get(...)``, ``os.getenv(...)``)
    and calls of this file's own helpers that read the environment with their
    first argument (``_env("NAME")``), when the name is a string literal.
    """
    tree = ast.parse(source)
    helpers = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _reads_environment(node)
    }
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            direct = isinstance(func, ast.Attribute) and (
                (func.attr in ("get", "pop", "setdefault") and _is_environ(func.value)) or func.attr == "getenv"
            )
            helper = isinstance(func, ast.Name) and func.id in helpers
            if not (direct or helper):
                continue
            key = node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


SETTING_LITERAL = re.compile(r"^%?(ACA_[A-Z0-9_]+|AcaStorage(?:__\w+)?)%?$")


def setting_literals(source: str) -> set[str]:
    """``ACA_*`` and ``AcaStorage*`` names appearing as string literals (``%NAME%`` binding expressions too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = SETTING_LITERAL.match(node.value)
            if found:
                names.add(found.group(1))
    return names
