"""Command-line options read from the Python API itself: names, defaults, choices and help.

A function's signature and its numpydoc ``Parameters`` section are read from its source
file with :mod:`ast`, without importing the module, so ``genlm-sc ... --help`` loads
neither PyTorch nor scanpy and always says what the function says.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["OneOrMore", "Parameter", "add_options", "api_parameters", "parameter_docs"]

PACKAGE = Path(__file__).resolve().parents[1]
_NO_DEFAULT = object()
_SECTION = re.compile(r"^(\S[^\n]*)\n-{3,}\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Parameter:
    """One keyword of an API function, as the command line offers it."""

    name: str
    annotation: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _source(module: str) -> ast.Module:
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.parse(path.read_text())


def _function(module: str, name: str) -> ast.FunctionDef:
    for node in _source(module).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(f"{module} defines no function {name}")


def _literal_aliases(module: str, depth: int = 1) -> dict[str, tuple[str, ...]]:
    """``Name = Literal[...]`` aliases of a module and of the modules it imports them from."""
    found: dict[str, tuple[str, ...]] = {}
    package = module.rpartition(".")[0]
    for node in _source(module).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            values = _literal_values(node.value)
            if values and isinstance(node.targets[0], ast.Name):
                found[node.targets[0].id] = values
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and depth:
            aliases = _literal_aliases(f"{package}.{node.module}", depth - 1)
            found |= {a.name: aliases[a.name] for a in node.names if a.name in aliases}
    return found


def _constant(module: str, name: str, depth: int = 2) -> Any:
    """The literal value of a module-level constant ``name`` of ``module``, following
    ``from .x import name`` (read from the sources, without importing them)."""
    package = module.rpartition(".")[0]
    for node in _source(module).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return ast.literal_eval(node.value)
        elif isinstance(node, ast.ImportFrom) and node.module and depth:
            if any((a.asname or a.name) == name for a in node.names):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                return _constant(f"{base}.{node.module}", name, depth - 1)
    raise LookupError(f"{module}: no literal constant {name}")


def _default(node: ast.expr, module: str) -> Any:
    """A parameter's default: a literal, or a module constant holding one."""
    if isinstance(node, ast.Name):
        return _constant(module, node.id)
    return ast.literal_eval(node)


def _literal_values(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "Literal":
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return tuple(str(ast.literal_eval(item)) for item in items)
    return None


def parameter_docs(docstring: str) -> dict[str, str]:
    """The numpydoc ``Parameters`` section as name → one paragraph of plain text (a line
    naming several parameters, ``a, b``, gives each the same text)."""
    docstring = inspect.cleandoc(docstring)
    sections = list(_SECTION.finditer(docstring))
    for i, header in enumerate(sections):
        if header.group(1).strip() != "Parameters":
            continue
        end = sections[i + 1].start() if i + 1 < len(sections) else len(docstring)
        body = docstring[header.end() : end]
        docs: dict[str, str] = {}
        names: list[str] = []
        for line in body.splitlines():
            if line and not line[0].isspace():
                names = [n.strip().split(" : ")[0].lstrip("*") for n in line.split(",")]
                for name in names:
                    docs[name] = ""
            elif line.strip():
                for name in names:
                    docs[name] = f"{docs[name]} {line.strip()}".strip()
        return {name: plain(text) for name, text in docs.items()}
    return {}


def plain(text: str) -> str:
    """reStructuredText roles and literals as plain text (``:func:`~a.b``` → ``b``)."""

    def role(match: re.Match) -> str:
        return match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)

    return re.sub(r":\w+:`(~?)([^`]+)`", role, text).replace("``", "")


@cache
def api_parameters(module: str, function: str) -> dict[str, Parameter]:
    """The keyword parameters of ``module.function`` with their defaults and help text."""
    node = _function(module, function)
    docs = parameter_docs(ast.get_docstring(node) or "")
    aliases = _literal_aliases(module)
    arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    defaults: list[Any] = [_NO_DEFAULT] * (
        len(node.args.posonlyargs) + len(node.args.args) - len(node.args.defaults)
    )
    defaults += [_default(d, module) for d in node.args.defaults]
    defaults += [_NO_DEFAULT if d is None else _default(d, module)
                 for d in node.args.kw_defaults]  # fmt: skip
    found = {}
    for argument, default in zip(arguments, defaults, strict=True):
        annotation = ast.unparse(argument.annotation) if argument.annotation else "str"
        choices = None
        for part in annotation.split(" | "):
            choices = aliases.get(part) or choices
            literal = _literal_values(ast.parse(part, mode="eval").body)
            choices = literal or choices
        found[argument.arg] = Parameter(
            argument.arg, annotation, default, docs.get(argument.arg, ""), choices
        )
    return found


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object such as \'{"model": "m/"}\'')
    return value


class OneOrMore(argparse.Action):
    """``nargs="+"`` for a ``str | Sequence[str]`` parameter: one value is passed as itself,
    several as a list (``--gene A`` gives ``"A"``, ``--gene A B`` gives ``["A", "B"]``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def _argparse_kwargs(parameter: Parameter) -> dict[str, Any]:
    kinds = [p for p in parameter.annotation.split(" | ") if p != "None"]
    first = kinds[0] if kinds else "str"
    kwargs: dict[str, Any] = {"dest": parameter.name}
    if first == "str" and "Sequence[str]" in kinds:
        kwargs.update(nargs="+", action=OneOrMore)
    elif first == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif first in ("int", "float"):
        kwargs["type"] = int if first == "int" else float
    elif re.match(r"(Sequence|Iterable|list)\[", first):
        kwargs["nargs"] = "+"
    elif first == "tuple[int, int]":
        kwargs.update(nargs=2, type=int, metavar=("START", "END"))
    elif first.startswith("Mapping["):
        kwargs.update(type=_json_object, metavar="JSON")
    if parameter.choices:
        kwargs["choices"] = parameter.choices
    return kwargs


def add_options(
    parser: argparse.ArgumentParser,
    module: str,
    function: str,
    *,
    skip: set[str] = frozenset(),
    positional: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
) -> list[str]:
    """Add the parameters of ``module.function`` as options (``snake_case`` →
    ``--kebab-case``) with the function's defaults and help; returns their names."""
    names = []
    for name, parameter in api_parameters(module, function).items():
        if name in skip:
            continue
        kwargs = _argparse_kwargs(parameter)
        text = parameter.help.replace("%", "%%")
        has_default = not parameter.required and parameter.default is not None
        if has_default and kwargs.get("action") is not argparse.BooleanOptionalAction:
            text = f"{text} (default: {parameter.default})"
        if name in positional:
            kwargs.pop("dest")
            parser.add_argument(name, help=text, metavar=name.upper(), **kwargs)
        else:
            must = parameter.required or name in required
            default = None if parameter.required else parameter.default
            parser.add_argument(parameter.flag, help=text, required=must, default=default,
                                **kwargs)  # fmt: skip
        names.append(name)
    return names
