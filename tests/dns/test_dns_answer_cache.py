"""The DNS answer cache's bound: bytes, least recently used out first."""

from __future__ import annotations

from sd_core.dns.cache import AnswerCache, CachedAnswer


def _answer(size: int) -> CachedAnswer:
    return CachedAnswer((b"x" * size,), (("svc", 1),))


def test_an_answer_in_use_outlives_a_stream_of_new_keys() -> None:
    one = _answer(100)
    cache = AnswerCache(max_bytes=3 * (one.size + 4))
    cache.put(b"used", one)
    for number in range(50):
        assert cache.get(b"used") is one  # read between every new key, as a hot name is
        cache.put(b"k%03d" % number, _answer(100))
    assert cache.get(b"used") is one
    assert len(cache) == 3
    assert cache.size <= cache.max_bytes


def test_the_least_recently_used_goes_first() -> None:
    cache = AnswerCache(max_bytes=2 * (_answer(100).size + 1))
    a, b = _answer(100), _answer(100)
    cache.put(b"a", a)
    cache.put(b"b", b)
    assert cache.get(b"a") is a
    cache.put(b"c", _answer(100))
    assert cache.get(b"b") is None
    assert cache.get(b"a") is a


def test_an_answer_over_the_whole_budget_is_not_kept() -> None:
    cache = AnswerCache(max_bytes=100)
    cache.put(b"big", _answer(100))
    assert len(cache) == 0
    assert cache.size == 0
