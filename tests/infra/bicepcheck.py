"""Just enough of Bicep to check what infra/ sets, without the Bicep compiler.

It understands comments, strings (with ``${...}`` interpolation and ``'''``
multi-line strings), bracket nesting, parameter declarations with their
decorators, the keys of an object literal and the ``name: '...'`` entries of
an array literal. The checks return lists of problems (empty = fine) so that
they can be tested on small snippets, and fail loudly on the real files.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SECRET_WORDS = re.compile(r"key|secret|password|token", re.IGNORECASE)
ROLE_REFERENCE = re.compile(r"\bbuiltinRoles(?:\[\s*'([^']+)'\s*\]|\.([A-Za-z_]\w*))")
_OPEN = {"{": "}", "[": "]", "(": ")"}
_CLOSE = {v: k for k, v in _OPEN.items()}


class BicepSyntaxError(ValueError):
    pass


# --- lexical layer ----------------------------------------------------------------


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
            i = _skip_code(text, i + 2, "}")
        elif ch == "\n":
            raise BicepSyntaxError(f"unterminated string before {i}")
        else:
            i += 1
    raise BicepSyntaxError("unterminated string")


def _skip_code(text: str, i: int, closer: str) -> int:
    """Index just past ``closer`` ending the code (an interpolation) that starts at ``i``."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i = _skip_string(text, i)
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            if depth == 0 and ch == closer:
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


def mask(text: str) -> str:
    """Comments blanked and string contents replaced by ``_`` (quotes and newlines kept, offsets kept).

    Structure (brackets, ``=``, ``:``) can then be read without being fooled by strings.
    """
    text = strip_comments(text)
    out = list(text)
    i = 0
    while i < len(text):
        if text[i] == "'":
            end = _skip_string(text, i)
            quote = 3 if text.startswith("'''", i) else 1
            for j in range(i + quote, end - quote):
                if out[j] != "\n":
                    out[j] = "_"
            i = end
        else:
            i += 1
    return "".join(out)


def matching(masked: str, start: int) -> int:
    """Index of the bracket closing the one at ``masked[start]``."""
    stack = []
    for i in range(start, len(masked)):
        ch = masked[i]
        if ch in _OPEN:
            stack.append(ch)
        elif ch in _CLOSE:
            if not stack or stack[-1] != _CLOSE[ch]:
                raise BicepSyntaxError(f"unbalanced {ch!r} at {i}")
            stack.pop()
            if not stack:
                return i
    raise BicepSyntaxError(f"unclosed {masked[start]!r} at {start}")


def check_balanced(text: str) -> list[str]:
    """Problems with brackets and strings of a whole file."""
    try:
        masked = mask(text)
    except BicepSyntaxError as e:
        return [str(e)]
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(masked):
        if ch in _OPEN:
            stack.append((ch, i))
        elif ch in _CLOSE:
            if not stack or stack[-1][0] != _CLOSE[ch]:
                return [f"unbalanced {ch!r} at line {masked.count(chr(10), 0, i) + 1}"]
            stack.pop()
    return [f"unclosed {ch!r} from line {masked.count(chr(10), 0, i) + 1}" for ch, i in stack]


# --- declarations -----------------------------------------------------------------------


def declaration_block(text: str, kind: str, name: str) -> str:
    """The literal (``{...}`` or ``[...]``) assigned by ``var name = ...`` (or ``param``/``output``)."""
    masked = mask(text)
    found = re.search(rf"^\s*{kind}\s+{re.escape(name)}\b[^=\n]*=\s*([{{\[])", masked, re.MULTILINE)
    if not found:
        raise LookupError(f"no `{kind} {name} = {{...}}` or `[...]` literal")
    start = found.start(1)
    return text[start : matching(masked, start) + 1]


def object_keys(block: str) -> list[str]:
    """The keys of the object literal ``block`` at its top level (multi-line form)."""
    masked = mask(block)
    if not masked.startswith("{"):
        raise BicepSyntaxError("not an object literal")
    keys = []
    depth = 0
    line_start = True
    i = 0
    while i < len(masked):
        ch = masked[i]
        if line_start and depth == 1:
            found = re.match(r"[ \t]*([A-Za-z_]\w*|'[^'\n]*')\s*:", masked[i:])
            if found:
                raw = block[i + found.start(1) : i + found.end(1)]
                keys.append(raw.strip("'"))
        line_start = ch == "\n"
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        i += 1
    return keys


def name_entries(block: str) -> set[str]:
    """Every ``name: '<literal>'`` inside ``block`` (entries of an env or secrets array)."""
    return set(re.findall(r"\bname:\s*'([^'$]*)'", strip_comments(block)))


@dataclass
class Param:
    name: str
    type: str
    decorators: list[str] = field(default_factory=list)
    has_default: bool = False
    line: int = 0

    @property
    def secure(self) -> bool:
        return any(re.match(r"@(sys\.)?secure\(\s*\)", d) for d in self.decorators)


def params(text: str) -> list[Param]:
    """Parameter declarations with their decorators."""
    masked = mask(text)
    original = strip_comments(text)
    found: list[Param] = []
    decorators: list[str] = []
    i = 0
    while i < len(masked):
        line_end = masked.find("\n", i)
        line_end = len(masked) if line_end < 0 else line_end
        stripped = masked[i:line_end].strip()
        if stripped.startswith("@"):
            # a decorator may span lines: up to its balanced closing parenthesis
            paren = masked.find("(", i)
            end = matching(masked, paren) if 0 <= paren < line_end else line_end - 1
            decorators.append(original[i : end + 1].strip())
            i = masked.find("\n", end)
            i = len(masked) if i < 0 else i + 1
            continue
        declared = re.match(r"\s*param\s+([A-Za-z_]\w*)\s+([^\s=]+)(\s*=)?", masked[i:line_end])
        if declared:
            found.append(
                Param(
                    name=declared.group(1),
                    type=declared.group(2),
                    decorators=decorators,
                    has_default=bool(declared.group(3)),
                    line=masked.count("\n", 0, i) + 1,
                )
            )
        if stripped:
            decorators = []
        i = line_end + 1
    return found


# --- checks --------------------------------------------------------------------------------


def check_params(text: str, where: str = "") -> list[str]:
    """No ``@secure()`` parameter has a default; every secret-looking parameter is ``@secure()``."""
    problems = []
    for p in params(text):
        if p.secure and p.has_default:
            problems.append(f"{where}:{p.line}: @secure() parameter {p.name} has a default value")
        if SECRET_WORDS.search(p.name) and not p.secure:
            problems.append(f"{where}:{p.line}: parameter {p.name} looks secret but is not @secure()")
    return problems


def check_settings(bicep_text: str, required: set[str], forbidden: set[str] = frozenset()) -> list[str]:
    """Every ``required`` name is a key of ``var appSettings = {...}``; no ``forbidden`` one is."""
    keys = set(object_keys(declaration_block(bicep_text, "var", "appSettings")))
    problems = [f"app setting {name} is not set by the Bicep" for name in sorted(required - keys)]
    problems += [f"app setting {name} must not be set in Azure" for name in sorted(forbidden & keys)]
    return problems


def check_env(bicep_text: str, required: set[str], forbidden: set[str] = frozenset()) -> list[str]:
    """Every ``required`` name is an entry of ``var containerEnv = [...]``; no ``forbidden`` one is."""
    names = name_entries(declaration_block(bicep_text, "var", "containerEnv"))
    problems = [f"environment variable {name} is not set on the container app" for name in sorted(required - names)]
    problems += [f"environment variable {name} must not be set in Azure" for name in sorted(forbidden & names)]
    return problems


def check_role_ids(text: str, table: dict[str, str], where: str = "") -> list[str]:
    """Role references name roles of the table; a literal GUID must be in the table under the name beside it."""
    problems = []
    code = strip_comments(text)
    for match in ROLE_REFERENCE.finditer(code):
        name = match.group(1) or match.group(2)
        if name not in table:
            problems.append(f"{where}: role {name!r} is not in infra/builtin-roles.json")
    by_id = {guid.lower(): name for name, guid in table.items()}
    lines = text.splitlines()
    code_lines = code.splitlines()
    for number, line in enumerate(code_lines, start=1):
        for guid in GUID.findall(line):
            claimed = by_id.get(guid.lower())
            if claimed is None:
                problems.append(f"{where}:{number}: GUID {guid} is not a role of infra/builtin-roles.json")
            elif claimed.lower() not in lines[number - 1].lower():
                problems.append(f"{where}:{number}: GUID {guid} is {claimed!r}, which that line does not name")
    return problems


def role_definition_sources(text: str) -> list[str]:
    """Problems with ``roleDefinitionId:`` values that come neither from the table nor from a custom role.

    A custom role is a ``roleDefinitions`` resource of the same file or a
    ``param <name>RoleId`` (the caller passes the id of one; see the tests of main.bicep).
    """
    code = strip_comments(text)
    role_params = set(re.findall(r"^\s*param\s+(\w+RoleId)\s+string\b", code, re.MULTILINE))
    from_table = {m.group(1) for m in re.finditer(r"^\s*var\s+(\w+)\s*=.*\bbuiltinRoles\b", code, re.MULTILINE)}
    custom = set(re.findall(r"^\s*resource\s+(\w+)\s+'Microsoft\.Authorization/roleDefinitions@", code, re.MULTILINE))
    problems = []
    for match in re.finditer(r"\broleDefinitionId:\s*(.+)$", code, re.MULTILINE):
        value = match.group(1).strip()
        if "builtinRoles" in value or value in from_table or value in role_params:
            continue
        owner = re.fullmatch(r"(\w+)\.id", value)
        if owner and owner.group(1) in custom:
            continue
        problems.append(f"roleDefinitionId: {value} is neither a table role nor a custom role")
    return problems


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
