"""The malformed-request log (gossip/logfilter.py) on its own, with a hand-driven clock."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from gossip.logfilter import ServerLog


def test_a_burst_per_window_then_the_count_of_what_was_left_out(caplog):
    caplog.set_level(logging.DEBUG, logger="test.server")
    now = [0.0]
    log = ServerLog(logging.getLogger("test.server"), burst=2, window=60.0, clock=lambda: now[0])
    for _ in range(5):
        log.exception("Error handling request from %s", "10.0.0.7",
                      exc_info=BadHttpMessage("bad header"))  # fmt: skip
    assert len(caplog.records) == 2
    now[0] = 61.0
    log.exception("Error handling request from %s", "10.0.0.7", exc_info=BadHttpMessage("x y"))
    last = caplog.records[-1]
    assert last.getMessage() == (
        "refused a malformed HTTP request from 10.0.0.7: 400 x y (3 more left out)"
    )
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in caplog.records)


def test_other_records_pass_unchanged(caplog):
    caplog.set_level(logging.DEBUG, logger="test.server")
    log = ServerLog(logging.getLogger("test.server"), burst=0)
    try:
        raise RuntimeError("ours")
    except RuntimeError as e:
        log.exception("Error handling request from %s", "10.0.0.7", exc_info=e)
    log.debug("plain %s", "debug")
    (err, dbg) = caplog.records
    assert err.levelno == logging.ERROR and err.exc_info is not None
    assert dbg.getMessage() == "plain debug"


@pytest.mark.parametrize("burst", [0, 3])
def test_nothing_but_warnings_whatever_the_burst(caplog, burst):
    caplog.set_level(logging.DEBUG, logger="test.server")
    log = ServerLog(logging.getLogger("test.server"), burst=burst)
    for _ in range(10):
        log.exception("Error handling request from %s", "x", exc_info=BadHttpMessage("b"))
    assert len(caplog.records) == burst


def test_the_reason_never_quotes_the_request(caplog):
    """aiohttp quotes the line it refused, which may carry a cookie, a code or a token."""
    caplog.set_level(logging.DEBUG, logger="test.server")
    log = ServerLog(logging.getLogger("test.server"), burst=10)
    for message in ("Invalid header value char:\n\n  b'Cookie: s=SECRET\\x01'\n      ^",
                    "Got more than 8190 bytes when reading: b's=SECRET; pad=xxx...'.",
                    "Got more than 8190 bytes when reading: bytearray(b'/ui/login?code=SECRET').",
                    "Invalid HTTP header: 'Authorization: Bearer SECRET'"):  # fmt: skip
        log.exception("Error handling request from %s", "x", exc_info=BadHttpMessage(message))
    said = [r.getMessage() for r in caplog.records]
    assert not any("SECRET" in line for line in said), said
    assert said[0].endswith("400 Invalid header value char"), said
    assert said[1].endswith("400 Got more than 8190 bytes when reading"), said
