"""Helpers shared by the sweep tests."""

from __future__ import annotations


class Counting:
    """An iterator of one-run batches that records how many were pulled when each result came back."""

    def __init__(self, n: int):
        self.items = iter([[({}, s, f"k{s}")] for s in range(n)])
        self.pulled = self.completed = 0
        self.outstanding: list[int] = []

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.items)
        self.pulled += 1
        return batch

    def on_result(self, rows: list[dict], seconds: float) -> None:
        self.outstanding.append(self.pulled - self.completed)
        self.completed += 1
