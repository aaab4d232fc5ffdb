"""Ids: UUIDv7 text, strictly increasing in one process, never shared with a forked child."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from asyncjobs._types import new_id


def test_ids_are_uuid7_text_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(20_000)]  # several ms, and more than one 4 KiB read
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids[:: len(ids) // 50]:
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (7, uuid.RFC_4122, text)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs fork")
def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    new_id()  # the parent has random bits read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, "\n".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    parent = [new_id() for _ in range(100)]
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    # The random tails differ even where time and counter coincide.
    assert not {text[19:] for text in parent} & {text[19:] for text in child}
