"""The server-side result store: bounded by bytes and age, least recently used out first."""

from __future__ import annotations

import threading

from webapp.result_store import ResultStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def store(max_bytes: int = 100, max_age_s: float = 60, clock: Clock | None = None) -> ResultStore:
    return ResultStore(max_bytes, max_age_s, size_of=len, clock=clock or Clock())


def test_keeps_results_within_the_byte_budget_least_recently_used_out_first():
    results = store(max_bytes=100)
    a, b, c = (results.put(ch * 40) for ch in "abc")  # 120 bytes: a must go
    assert results.get(a) is None and results.get(b) == "b" * 40 and results.get(c) == "c" * 40
    assert results.nbytes == 80 and len(results) == 2
    results.get(b)  # b is now the most recently used: c goes next
    d = results.put("d" * 40)
    assert results.get(c) is None and results.get(b) and results.get(d)
    assert results.nbytes <= 100


def test_a_result_larger_than_the_budget_is_not_kept_and_evicts_nothing():
    results = store(max_bytes=100)
    small = results.put("s" * 10)
    big = results.put("x" * 101)
    assert results.get(big) is None and results.get(small) == "s" * 10


def test_results_expire_after_their_last_use():
    clock = Clock()
    results = store(max_age_s=60, clock=clock)
    old, used = results.put("old"), results.put("used")
    clock.now = 50
    assert results.get(used) == "used"
    clock.now = 100
    assert results.get(old) is None and results.get(used) == "used"
    assert results.nbytes == len("used")


def test_keys_are_unguessable_and_odd_keys_find_nothing():
    results = store()
    keys = {results.put("x") for _ in range(5)}
    assert len(keys) == 5 and all(len(k) >= 20 for k in keys)
    for odd in (None, 0, ["k"], {"k": 1}, "", "../x"):
        assert results.get(odd) is None


def test_threads_never_break_the_budget():
    results = store(max_bytes=1000)
    errors: list[BaseException] = []

    def user(n: int) -> None:
        try:
            for i in range(300):
                key = results.put("x" * (1 + (n * i) % 90))
                results.get(key)
                assert results.nbytes <= 1000
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results.nbytes == sum(len(results.get(k) or "") for k in list(results._items))
