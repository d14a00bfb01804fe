"""A reader for the subset of the Alloy configuration syntax the stack uses.

It covers blocks with optional string labels, attributes, strings, numbers,
booleans, lists, objects, references such as `loki.write.local.receiver`, and
the calls `sys.env` and `coalesce`. Anything else is a parse error, so a
config the reader does not understand fails the check instead of passing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .common import CheckError

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}\[\](),=])
    """,
    re.X | re.S,
)


@dataclass
class Reference:
    """A reference to another component's export, such as `discovery.docker.x.targets`."""

    path: str


@dataclass
class Call:
    function: str
    args: list[Any]


@dataclass
class Block:
    name: str
    label: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def children(self, name: str) -> list["Block"]:
        return [block for block in self.blocks if block.name == name]


def tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise CheckError(f"Alloy config line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group(), text.count("\n", 0, position) + 1))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise CheckError(f"Alloy config: unexpected end of file, expected {value or kind}")
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise CheckError(f"Alloy config line {token[2]}: expected {value or kind}, found {token[1]!r}")
        self.index += 1
        return token

    def body(self, closing: str | None) -> Block:
        block = Block(name="", label=None)
        while True:
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise CheckError(f"Alloy config: missing {closing!r} at end of file")
                return block
            if closing is not None and token[1] == closing:
                self.index += 1
                return block
            name = self.take(kind="ident")[1]
            following = self.peek()
            if following is not None and following[1] == "=":
                self.index += 1
                if name in block.attributes:
                    raise CheckError(f"Alloy config line {token[2]}: attribute {name} set twice")
                block.attributes[name] = self.expression()
                continue
            label = None
            if following is not None and following[0] == "string":
                label = json.loads(self.take(kind="string")[1])
            self.take("{")
            child = self.body("}")
            child.name, child.label = name, label
            block.blocks.append(child)

    def expression(self) -> Any:
        kind, value, line = self.take()
        if kind == "string":
            return json.loads(value)
        if kind == "number":
            return float(value) if "." in value else int(value)
        if value == "[":
            items = []
            while self.peek() is not None and self.peek()[1] != "]":
                items.append(self.expression())
                if self.peek() is not None and self.peek()[1] == ",":
                    self.index += 1
            self.take("]")
            return items
        if value == "{":
            result = {}
            while self.peek() is not None and self.peek()[1] != "}":
                key_kind, key, _ = self.take()
                if key_kind == "string":
                    key = json.loads(key)
                elif key_kind != "ident":
                    raise CheckError(f"Alloy config line {line}: invalid object key {key!r}")
                self.take("=")
                result[key] = self.expression()
                if self.peek() is not None and self.peek()[1] == ",":
                    self.index += 1
            self.take("}")
            return result
        if kind == "ident":
            if value in ("true", "false"):
                return value == "true"
            if value == "null":
                return None
            if self.peek() is not None and self.peek()[1] == "(":
                self.index += 1
                args = []
                while self.peek() is not None and self.peek()[1] != ")":
                    args.append(self.expression())
                    if self.peek() is not None and self.peek()[1] == ",":
                        self.index += 1
                self.take(")")
                return Call(value, args)
            return Reference(value)
        raise CheckError(f"Alloy config line {line}: unexpected {value!r}")


def parse(text: str) -> Block:
    """Parse a whole config file into a root block holding the components."""
    return _Parser(text).body(None)


def evaluate(value: Any, env: dict[str, str]) -> Any:
    """Evaluate the calls the stack uses: `sys.env(name)` and `coalesce(a, b, ...)`."""
    if isinstance(value, Call):
        args = [evaluate(arg, env) for arg in value.args]
        if value.function == "sys.env":
            return env.get(args[0], "")
        if value.function == "coalesce":
            return next((arg for arg in args if arg not in ("", None, [], {})), args[-1])
        raise CheckError(f"Alloy config: the check cannot evaluate function {value.function}()")
    if isinstance(value, dict):
        return {key: evaluate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, env) for item in value]
    return value


def components(root: Block) -> dict[str, Block]:
    """Return top-level components keyed by `name.label`."""
    return {f"{block.name}.{block.label}": block for block in root.blocks}
