"""JSON from outside (request bodies of the JSON APIs, the ``claims`` request parameter): one
parser, so every malformed document is the same clear refusal, never a crash.

``json.loads`` alone lets through what later breaks: a document nested thousands deep (a
``RecursionError`` in the parser, or later when it is serialized again), ``NaN`` and ``Infinity``
(not JSON, RFC 8259 6, and refused by PostgreSQL's JSON columns), numbers that overflow to
infinity, strings with lone surrogates or NUL, and bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import math

from flask import request

from app.errors import InvalidInput

#: How deep objects and arrays may nest. Every document the hub accepts is a few levels deep.
MAX_DEPTH = 32


class MalformedJSON(InvalidInput):
    title = "Invalid JSON"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _check_structure(value) -> None:
    """ValueError if ``value`` nests deeper than MAX_DEPTH or holds a string that is not Unicode
    text the hub can store (a lone surrogate such as ``"\\ud800"``: valid JSON syntax, but no
    database stores it, and I-JSON, RFC 7493 2.1, refuses it; or NUL). Without recursion."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _require_text(node)
            continue
        if isinstance(node, dict):
            for key in node:
                _require_text(key)
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _require_text(text: str) -> None:
    if "\x00" in text:  # no PostgreSQL text column holds NUL (U+0000)
        raise ValueError("a string holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate") from None


def loads(data: str | bytes):
    """Parse an untrusted JSON document (RFC 8259, UTF-8), or raise ValueError with an ASCII message
    fit for an error description."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError, integers beyond Python's digit limit, NaN
        message = f"{exc.msg} at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else "invalid number"
        raise ValueError(message) from None
    _check_structure(value)
    return value


def json_body(*, require_content_type: bool = False):
    """The request body of a JSON API, parsed with ``loads``; MalformedJSON (400) if it is not
    JSON. Beyond ``MAX_CONTENT_LENGTH`` werkzeug refuses the body with 413 before it is read."""
    if require_content_type and not request.is_json:
        raise MalformedJSON("the body must be JSON (Content-Type: application/json)")
    try:
        return loads(request.get_data(cache=True))
    except ValueError as exc:
        raise MalformedJSON(f"the body is not a JSON document ({exc})") from None
