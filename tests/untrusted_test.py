"""Parsing unsigned JSON and TOML: every hostile shape is Unreadable (with its line where
one is known), never RecursionError or a bare ValueError; what govsnap writes still reads."""

from __future__ import annotations

import json
import tomllib

import pytest

from govsnap.untrusted import MAX_DEPTH, Unreadable, load_json, load_toml

DEEP = 100_000


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[" * DEEP + "]" * DEEP, 1),
        ('{"a":' * DEEP + "1" + "}" * DEEP, 1),
        ('{\n"a":\n' + "[" * DEEP, 3),  # unterminated too
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), 1),
        ('{"a": ' + "1" * 5000 + "}", None),  # past Python's 4,300-digit limit
        ('{"a": NaN}', None),
        ('{"a": -Infinity}', None),
        (b"\xff\xfe{}", None),
        ('"' + '\\"' * DEEP, None),
        ("{", None),
    ],
)
def test_hostile_json_is_unreadable(text: str | bytes, line: int | None) -> None:
    with pytest.raises(Unreadable) as caught:
        load_json(text)
    assert caught.value.line == line


def test_brackets_inside_json_strings_nest_nothing() -> None:
    data = {"a": "[" * DEEP, "b": ["{" * 100, {"c": "\\\"[[["}]}
    assert load_json(json.dumps(data)) == data
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_json(nested) == json.loads(nested)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a = 1\nx = " + "[" * 50_000 + "]" * 50_000, 2),
        ("a = " + "{b = " * 50_000 + "1" + "}" * 50_000, 1),
        # Dotted keys nest tables with no bracket (and tomllib is quadratic in their parts).
        ("a = 1\n" + ".".join(["k"] * 50_000) + " = 1", 2),
        ("[" + ".".join(['"k"'] * 50_000) + "]\nx = 1", 1),
        ("[t]\n" + " . ".join(["'k'"] * 50_000) + " = 1", 2),
        ("a = 1\nb = " + "1" * 5000, 2),
    ],
)
def test_hostile_toml_is_unreadable(text: str, line: int) -> None:
    with pytest.raises(Unreadable) as caught:
        load_toml(text)
    assert caught.value.line == line


def test_toml_nested_past_the_bound_by_headers_and_keys_together_is_unreadable() -> None:
    half = MAX_DEPTH // 2 + 1
    with pytest.raises(Unreadable):
        load_toml("[" + ".".join(["t"] * half) + "]\n" + ".".join(["k"] * half) + " = 1\n")


def test_brackets_in_toml_strings_and_comments_nest_nothing() -> None:
    text = (
        'a = "' + "[" * 100 + '"\n'
        "b = '" + "{" * 100 + "'\n"
        'c = """\n' + "[" * 100 + '\n"""\n'
        "d = '''" + "{" * 100 + "'''\n"
        "# " + "[" * 100 + "\n"
        "e = [" + ", ".join(["1.5"] * 200) + "]\n"
        "[[t]]\nx = [[1], [2]]\n"
    )
    assert load_toml(text) == tomllib.loads(text)


def test_malformed_toml_is_left_to_tomllib_for_its_line() -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        load_toml("a = \n")
