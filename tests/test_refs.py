"""Docker's reference normalisation: input | familiar form | fully qualified form."""

from __future__ import annotations

import pytest

from cache.errors import BadReference
from cache.refs import parse_reference

D = "sha256:" + "ab" * 32

TABLE = """
busybox                          | busybox:latest                | docker.io/library/busybox:latest
busybox:latest                   | busybox:latest                | docker.io/library/busybox:latest
docker.io/library/busybox:latest | busybox:latest                | docker.io/library/busybox:latest
docker.io/busybox                | busybox:latest                | docker.io/library/busybox:latest
index.docker.io/library/busybox  | busybox:latest                | docker.io/library/busybox:latest
library/busybox:1.36             | busybox:1.36                  | docker.io/library/busybox:1.36
me/app:1.0                       | me/app:1.0                    | docker.io/me/app:1.0
me/sub/app                       | me/sub/app:latest             | docker.io/me/sub/app:latest
localhost/app                    | localhost/app:latest          | localhost/app:latest
localhost:5000/app               | localhost:5000/app:latest     | localhost:5000/app:latest
localhost:5000/app:v2            | localhost:5000/app:v2         | localhost:5000/app:v2
ghcr.io/owner/repo:x.y-z_1       | ghcr.io/owner/repo:x.y-z_1    | ghcr.io/owner/repo:x.y-z_1
my.registry:443/a/b              | my.registry:443/a/b:latest    | my.registry:443/a/b:latest
a__b/c-d--e.f                    | a__b/c-d--e.f:latest          | docker.io/a__b/c-d--e.f:latest
busybox@{D}                      | busybox@{D}                   | docker.io/library/busybox@{D}
busybox:1@{D}                    | busybox:1@{D}                 | docker.io/library/busybox:1@{D}
localhost:5000/app@{D}           | localhost:5000/app@{D}        | localhost:5000/app@{D}
"""


def rows():
    for line in TABLE.strip().splitlines():
        yield [c.strip().replace("{D}", D) for c in line.split("|")]


@pytest.mark.parametrize("text,familiar,full", list(rows()))
def test_normalisation(text: str, familiar: str, full: str):
    ref = parse_reference(text)
    assert str(ref) == familiar
    assert ref.full == full
    # The familiar and the full form parse back to the same reference.
    assert parse_reference(familiar) == ref
    assert parse_reference(full) == ref


def test_parts():
    ref = parse_reference("localhost:5000/team/app:1.0")
    assert ref.domain == "localhost:5000"
    assert ref.path == "team/app"
    assert ref.tag == "1.0"
    assert ref.digest is None
    assert ref.familiar_name == "localhost:5000/team/app"
    ref = parse_reference(f"busybox@{D}")
    assert ref.tag is None and ref.digest == D


def test_no_default_tag():
    assert parse_reference("busybox", default_tag=False).tag is None
    assert str(parse_reference("busybox", default_tag=False)) == "busybox"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox",
        "me/App",
        "busybox:",
        "busybox:-x",
        "busybox:" + "t" * 129,
        "busybox@sha256:123",
        "busy box",
        "a//b",
        "-a/b",
        "a/b/",
        ":tag",
        "ab" * 32,
        "x/" + "a" * 260,
    ],
)
def test_bad_references(bad: str):
    with pytest.raises(BadReference):
        parse_reference(bad)
