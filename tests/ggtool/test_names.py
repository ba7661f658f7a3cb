"""Ollama's model-name grammar (reference/ollama.md §1), rule by rule."""

from __future__ import annotations

import contextlib
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ggtool.errors import InvalidNameError
from ggtool.names import MISSING_PART, ModelName, is_valid_part, parse_model_name

H, NS, T = "registry.ollama.ai", "library", "latest"

PARSE_BARE = [
    # input, host, namespace, model, tag, scheme
    ("m", "", "", "m", "", ""),
    ("m:t", "", "", "m", "t", ""),
    ("ns/m", "", "ns", "m", "", ""),
    ("ns/m:t", "", "ns", "m", "t", ""),
    ("h/ns/m:t", "h", "ns", "m", "t", ""),
    ("host:5000/ns/m", "host:5000", "ns", "m", "", ""),
    ("host:5000/ns/m:t", "host:5000", "ns", "m", "t", ""),
    ("http://h/ns/m:t", "h", "ns", "m", "t", "http"),
    ("ns/", "", "ns", MISSING_PART, "", ""),
    ("m:", "", "", "m", MISSING_PART, ""),
    ("/m", "", MISSING_PART, "m", "", ""),
    ("a/b/c/d", "a/b", "c", "d", "", ""),  # a 4th '/' stays in the host -> invalid
    ("localhost:5000/m", "", "localhost:5000", "m", "", ""),
]


@pytest.mark.parametrize(("s", "host", "ns", "model", "tag", "scheme"), PARSE_BARE)
def test_parse_bare(s: str, host: str, ns: str, model: str, tag: str, scheme: str) -> None:
    n = ModelName.parse_bare(s)
    assert (n.host, n.namespace, n.model, n.tag, n.scheme) == (host, ns, model, tag, scheme)


VALID = [
    ("llama3", (H, NS, "llama3", T)),
    ("llama3:8b", (H, NS, "llama3", "8b")),
    ("user/my-model:v1.0", (H, "user", "my-model", "v1.0")),
    ("localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t")),
    ("hf.co/Org_x/Model.Name:Q4_K_M", ("hf.co", "Org_x", "Model.Name", "Q4_K_M")),
    ("_m", (H, NS, "_m", T)),
    ("m" * 80, (H, NS, "m" * 80, T)),
    ("n" * 80 + "/m", (H, "n" * 80, "m", T)),
]


@pytest.mark.parametrize(("s", "parts"), VALID)
def test_valid_names(s: str, parts: tuple[str, str, str, str]) -> None:
    n = parse_model_name(s)
    assert (n.host, n.namespace, n.model, n.tag) == parts


INVALID = [
    "",
    ":",
    "m:",
    "ns/",
    "/m",
    "-m",  # first char must be alnum or _
    ".m",
    "m" * 81,  # model too long
    "n" * 81 + "/m",  # namespace too long
    "m:" + "t" * 81,  # tag too long
    "ns.x/m",  # '.' not allowed in a namespace
    "ns/m:t:t2",
    "m@sha256:abc",  # not a full digest: Ollama's parse, then invalid '@'
    "localhost:5000/m",  # host requires namespace: 'localhost:5000' is no namespace
    "a/b/c/d",
    "m/t x",
    "ns/m!",
    "ünï/m",
    "h" * 351 + "/ns/m",  # host too long
    "ns/-m",
]


@pytest.mark.parametrize("s", INVALID)
def test_invalid_names(s: str) -> None:
    assert not ModelName.parse(s).is_valid()
    with pytest.raises(InvalidNameError):
        parse_model_name(s)


@pytest.mark.parametrize(
    ("kind", "s", "ok"),
    [
        ("host", "a.b-c_d:80", True),
        ("host", ":a", False),
        ("namespace", "a-b_c", True),
        ("namespace", "a.b", False),
        ("namespace", "a:b", False),
        ("model", "a.b-c_d", True),
        ("model", "a:b", False),
        ("tag", "Q4_K_M", True),
        ("tag", "1.0-rc", True),
        ("tag", "", False),
        ("model", "_", True),
    ],
)
def test_part_rules(kind: str, s: str, ok: bool) -> None:
    assert is_valid_part(kind, s) is ok


@pytest.mark.parametrize(
    ("s", "shortest"),
    [
        ("llama3", "llama3:latest"),
        ("library/llama3:8b", "llama3:8b"),
        ("user/m", "user/m:latest"),
        ("REGISTRY.OLLAMA.AI/Library/m:t", "m:t"),
        ("localhost:5000/ns/m:t", "localhost:5000/ns/m:t"),
    ],
)
def test_display_shortest(s: str, shortest: str) -> None:
    assert parse_model_name(s).display_shortest() == shortest


def test_filepath_roundtrip() -> None:
    n = parse_model_name("localhost:5000/ns/m:t")
    assert n.filepath() == PurePosixPath("localhost:5000", "ns", "m", "t")
    assert ModelName.from_filepath(n.filepath()).equal_fold(n)
    assert not ModelName.from_filepath("a/b/c").is_valid()


def test_case_insensitive_equality() -> None:
    assert parse_model_name("Llama3:Latest").equal_fold(parse_model_name("llama3"))
    assert parse_model_name("Llama3").model == "Llama3"  # the user's spelling is kept


def test_digest_extension() -> None:
    d = "sha256:" + "ab" * 32
    n = parse_model_name(f"user/m:t@{d}")
    assert n.digest == d and n.tag == "t" and n.model == "m"
    assert str(n) == f"{H}/user/m:t@{d}"
    assert n.without_digest().digest == ""
    assert not ModelName.parse("m@sha256:" + "AB" * 32).is_valid()  # uppercase hex is not a pin


def test_merge_never_defaults_model() -> None:
    assert ModelName.parse("").model == ""
    assert ModelName.parse(":t").model == MISSING_PART  # cutPromised: empty side of a ':'
    assert not ModelName.parse(":t").is_valid()


_name_chars = st.sampled_from(list("abcXYZ019_-.:/@ ü"))


@given(st.text(_name_chars, max_size=40))
def test_parse_never_raises_and_roundtrips(s: str) -> None:
    """Any string parses; a valid name renders to a string that parses to the same name."""
    n = ModelName.parse(s)
    if n.is_valid():
        again = parse_model_name(str(n))
        assert again == n
        assert ModelName.from_filepath(n.filepath()) == n.without_digest().__class__(
            host=n.host, namespace=n.namespace, model=n.model, tag=n.tag
        )
    else:
        with pytest.raises(InvalidNameError):
            parse_model_name(s)


@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_project_error(s: str) -> None:
    with contextlib.suppress(InvalidNameError):
        parse_model_name(s)
