"""lake.landing.LandingCursor: change detection that never skips a key landing at the cursor's time."""

import pytest

from lake.landing import LandedFile, LandingCursor, new_files


def _f(key, t):
    return LandedFile(key, 1, t)


def test_same_second_keys_are_new_until_seen():
    listing = [_f("a/2026-01-01/x", 100.0), _f("a/2026-01-01/y", 99.0)]
    fresh, c = new_files(listing, LandingCursor())
    assert [f.key for f in fresh] == ["a/2026-01-01/x", "a/2026-01-01/y"]
    assert c == LandingCursor(100.0, frozenset({"a/2026-01-01/x"}))
    # a new object with exactly the cursor's time (S3: same second) is new; the seen one is not
    listing.append(_f("a/2026-01-01/z", 100.0))
    fresh, c2 = new_files(listing, c)
    assert [f.key for f in fresh] == ["a/2026-01-01/z"]
    assert c2.modified == 100.0 and c2.keys_at_modified == {"a/2026-01-01/x", "a/2026-01-01/z"}
    assert new_files(listing, c2) == ([], c2)
    # a later time starts a fresh key set
    listing.append(_f("a/2026-01-02/w", 101.0))
    fresh, c3 = new_files(listing, c2)
    assert [f.key for f in fresh] == ["a/2026-01-02/w"] and c3 == LandingCursor(101.0, frozenset({"a/2026-01-02/w"}))


def test_serialise_round_trip_and_old_format():
    c = LandingCursor(1796227874.284826, frozenset({"b", "a"}))
    assert LandingCursor.parse(c.serialize()) == c
    assert LandingCursor.parse("1796227874.5") == LandingCursor(1796227874.5)  # the earlier float cursor
    assert LandingCursor.parse(None) == LandingCursor()
    with pytest.raises(ValueError, match="neither JSON nor a number"):
        LandingCursor.parse("yesterday")
    with pytest.raises(ValueError, match="numeric 'modified'"):
        LandingCursor.parse('{"keys": []}')
