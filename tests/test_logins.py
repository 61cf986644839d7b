"""The dashboard's logins (gossip/api/logins.py), sans I/O, on a clock we move: a code
works once and for a minute, a session lasts its time, both tables stay bounded."""

from __future__ import annotations

from gossip.api.logins import CODE_TTL_S, MAX_CODES, MAX_SESSIONS, SESSION_TTL_S, Logins


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_code_works_once_and_for_a_minute_only():
    clock = Clock()
    logins = Logins(clock)
    code = logins.code()
    session = logins.redeem(code)
    assert session and logins.valid(session)
    assert logins.redeem(code) is None  # spent
    late = logins.code()
    clock.now += CODE_TTL_S + 0.1
    assert logins.redeem(late) is None  # expired
    assert logins.redeem("") is None and logins.redeem("made-up") is None
    assert not logins.valid(None) and not logins.valid("") and not logins.valid(code)


def test_a_session_ends_with_its_time_or_when_ended():
    clock = Clock()
    logins = Logins(clock)
    a, b = logins.redeem(logins.code()), logins.redeem(logins.code())
    logins.end(a)
    assert not logins.valid(a) and logins.valid(b)
    clock.now += SESSION_TTL_S + 1
    assert not logins.valid(b)


def test_codes_and_sessions_are_bounded_the_oldest_going_first():
    logins = Logins(Clock())
    codes = [logins.code() for _ in range(MAX_CODES + 3)]
    assert all(logins.redeem(c) is None for c in codes[:3])
    sessions = [logins.redeem(c) for c in codes[3:]]
    assert all(sessions)
    sessions += [logins.redeem(logins.code()) for _ in range(MAX_SESSIONS)]
    assert [logins.valid(s) for s in sessions].count(True) == MAX_SESSIONS
    assert logins.valid(sessions[-1]) and not logins.valid(sessions[0])
