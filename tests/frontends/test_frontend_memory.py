"""The glibc mmap threshold is pinned at start unless the operator chose one."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from frontends.runtime import memory


class FakeMallopt:
    """Records calls the way the C function would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.argtypes: list[type] = []
        self.restype: type | None = None

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


class FakeLibc:
    def __init__(self) -> None:
        self.mallopt = FakeMallopt()


def test_the_threshold_is_pinned_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    assert memory.pin_mmap_threshold({}) is True
    assert libc.mallopt.calls == [(-3, 1 << 20)]
    assert libc.mallopt.argtypes == [ctypes.c_int, ctypes.c_int]


def test_an_operator_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    assert memory.pin_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
    assert libc.mallopt.calls == []


def test_without_mallopt_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert memory.pin_mmap_threshold({}) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_real_call_succeeds_here() -> None:
    assert memory.pin_mmap_threshold({}) is True
