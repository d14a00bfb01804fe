"""Parse and format Loki stream label strings such as `{app="web", env="dev"}`.

Loki 3.7 parses the `labels` field of a push with Prometheus' PromQL
`ParseMetric` (`syntax.ParseLabels` in `pkg/logql/syntax`), then drops labels
whose value is empty. This module reimplements that grammar from the
Prometheus lexer rules, so the receiver judges a client's escaping the way
Loki does:

- An optional metric name before the braces becomes the `__name__` label.
- Inside the braces, label names match `[a-zA-Z_][a-zA-Z0-9_]*`; `:` is only
  legal in a metric name. Only the `=` operator is allowed, and one trailing
  comma is accepted. Spaces, tabs, CR and LF separate tokens, and `#` starts a
  comment that runs to the next CR or LF.
- Values are quoted with `"`, `'` or backticks. Quoted values take Go escapes:
  `\\a \\b \\f \\n \\r \\t \\v \\\\`, the escaped quote character, three octal
  digits, `\\xHH`, `\\uHHHH` and `\\UHHHHHHHH`. A raw LF ends the string with an
  error; a raw CR, tab or NUL is allowed. Backtick values take no escapes.
- Octal and `\\x` escapes produce single bytes, as in Go's `strconv.Unquote`.
"""

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_METRIC_CHARS = _IDENT_CHARS | {":"}
_SPACE = frozenset(" \t\n\r")
_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
}

# (digit count, base, maximum value) for the numeric escapes.
_NUMERIC_ESCAPES = {"x": (2, 16, 0xFF), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}


class LabelSyntaxError(ValueError):
    """A label string that Loki's PromQL parser would reject."""


def parse_labels(raw):
    """Parse a label string into a sorted list of (name, value) pairs.

    `raw` is the label field as bytes. Empty values are dropped, as Loki
    does. Duplicate names are kept, because Loki reports them later as a
    per-stream validation error rather than a parse error.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LabelSyntaxError(f"invalid UTF-8 at byte {error.start}") from None
    pairs = _Parser(text).parse()
    non_empty = [(name, value) for name, value in pairs if value != ""]
    non_empty.sort(key=lambda pair: pair[0])
    return non_empty


def format_labels(labels):
    """Format a label mapping the way Loki's JSON push path does.

    Loki turns the `stream` object of a JSON push into a label string with
    names sorted and values quoted by Go's `strconv.Quote`, then parses that
    string like a protobuf label field. Names are written as given, so an
    invalid name fails in `parse_labels`.
    """
    items = sorted(labels.items())
    return "{" + ", ".join(f"{name}={go_quote(value)}" for name, value in items) + "}"


def go_quote(value):
    """Quote a string with Go's `strconv.Quote` escapes."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


class _Parser:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def error(self, message):
        raise LabelSyntaxError(f"{message} at offset {self.pos}")

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self):
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _SPACE:
                self.pos += 1
            elif char == "#":
                while self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                    self.pos += 1
            else:
                break

    def parse(self):
        pairs = []
        self.skip_space()
        if self.peek() in _METRIC_CHARS - set("0123456789"):
            # NOTE: PromQL keywords that are not metric names (such as `bool`
            # or `on`) are accepted here, although Prometheus rejects them.
            pairs.append(("__name__", self.read_while(_METRIC_CHARS)))
            self.skip_space()
        if self.peek() == "{":
            self.pos += 1
            pairs.extend(self.parse_label_list())
            self.skip_space()
        if self.pos != len(self.text):
            self.error(f"unexpected character {self.peek()!r} after the label set")
        return pairs

    def parse_label_list(self):
        pairs = []
        self.skip_space()
        if self.peek() == "}":
            self.pos += 1
            return pairs
        while True:
            pairs.append(self.parse_label())
            self.skip_space()
            char = self.peek()
            if char == "}":
                self.pos += 1
                return pairs
            if char != ",":
                self.error(f"expected ',' or '}}' but found {char!r}" if char else "missing '}'")
            self.pos += 1
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
                return pairs

    def parse_label(self):
        # NOTE: Prometheus 3 also accepts quoted UTF-8 label names such as
        # `{"a.b"="c"}`. They are rejected here, and Loki 3.7 may accept them.
        if self.peek() not in _IDENT_START or self.peek() == "":
            found = self.peek()
            self.error(f"expected a label name but found {found!r}" if found else "missing '}'")
        name = self.read_while(_IDENT_CHARS)
        self.skip_space()
        if self.peek() != "=":
            self.error(f"expected '=' after label name {name!r}")
        self.pos += 1
        if self.peek() in ("~", "!"):
            self.error(f"label {name!r} uses a matcher operator; only '=' is allowed")
        self.skip_space()
        return name, self.parse_value()

    def read_while(self, allowed):
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def parse_value(self):
        quote = self.peek()
        if quote not in ('"', "'", "`"):
            self.error("expected a quoted label value")
        self.pos += 1
        if quote == "`":
            return self.parse_raw_string()
        out = bytearray()
        while True:
            if self.pos >= len(self.text):
                self.error("unterminated quoted string")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                # Octal and \x escapes can form invalid UTF-8, which Loki keeps
                # as bytes. JSON output cannot, so those bytes become U+FFFD.
                return out.decode("utf-8", errors="replace")
            if char == "\n":
                self.error("unterminated quoted string (raw line feed)")
            if char == "\ufffd":
                # Go's decoder returns utf8.RuneError for U+FFFD itself, and
                # the Prometheus lexer rejects every RuneError in a string.
                self.error("U+FFFD must be escaped")
            if char == "\\":
                out += self.parse_escape(quote)
            else:
                out += char.encode("utf-8")

    def parse_raw_string(self):
        end = self.text.find("`", self.pos)
        if end < 0:
            self.error("unterminated raw string")
        value = self.text[self.pos : end]
        if "\ufffd" in value:
            self.error("U+FFFD is not allowed in a raw string")
        self.pos = end + 1
        return value

    def parse_escape(self, quote):
        char = self.peek()
        if char == "":
            self.error("escape sequence not terminated")
        self.pos += 1
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char == quote:
            return quote.encode()
        if char in "01234567":
            self.pos -= 1
            count, base, maximum = 3, 8, 0xFF
        elif char in _NUMERIC_ESCAPES:
            count, base, maximum = _NUMERIC_ESCAPES[char]
        else:
            self.error(f"unknown escape sequence \\{char}")
        digits = self.text[self.pos : self.pos + count]
        valid = "01234567" if base == 8 else "0123456789abcdefABCDEF"
        if len(digits) < count or any(digit not in valid for digit in digits):
            self.error(f"invalid escape sequence \\{char}{digits}")
        self.pos += count
        value = int(digits, base)
        if value > maximum or 0xD800 <= value < 0xE000:
            self.error(f"escape sequence {value:#x} is not a valid Unicode code point")
        if char in "x01234567":
            return bytes([value])
        return chr(value).encode("utf-8")
