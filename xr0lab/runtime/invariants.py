"""Always-on timeline invariants: cheap checks the scheduler feeds tick by tick."""

from __future__ import annotations

from xr0lab.runtime.arrays import same_values
from xr0lab.runtime.records import HOLD_KINDS, Array, TickRecord


class InvariantViolation(RuntimeError):
    """The executor's bookkeeping broke a timeline invariant; the message says which."""


class InvariantMonitor:
    """Cheap always-on checks, fed by the scheduler tick by tick.

    1. Ticks arrive in order 0, 1, 2, ... (none skipped, none executed twice).
    2. Every executed action comes from exactly one chunk: the current one, at index
       tick - anchor, each (chunk, index) at most once, never from a chunk already replaced, and
       the value equals chunk[..., index, :].
    3. The actions executed while a chunk was computing equal that chunk's conditioning prefix.
    """

    def __init__(self) -> None:
        self._next_tick = 0
        self._current: int | None = None
        self._last_index: int | None = None
        self._retired: set[int] = set()

    def on_tick(self, record: TickRecord, action: Array | None, source: Array | None,
                anchor: int | None) -> None:
        if record.tick != self._next_tick:
            what = "skipped" if record.tick > self._next_tick else "executed twice"
            raise InvariantViolation(f"tick {self._next_tick} {what}: got tick {record.tick}")
        self._next_tick += 1
        if record.chunk is None:
            if record.index is not None or record.kind not in HOLD_KINDS:
                raise InvariantViolation(f"tick {record.tick}: kind {record.kind!r} with index "
                                         f"{record.index} but no chunk")
            return
        if source is None or anchor is None:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} has no values")
        if record.chunk in self._retired:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} executed after a "
                                     f"newer chunk replaced it")
        if record.chunk != self._current:
            if self._current is not None:
                self._retired.add(self._current)
            self._current, self._last_index = record.chunk, None
        if record.index != record.tick - anchor:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} index "
                                     f"{record.index} but anchor {anchor} implies "
                                     f"{record.tick - anchor} (misaligned)")
        if self._last_index is not None and record.index <= self._last_index:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} index "
                                     f"{record.index} executed again (last {self._last_index})")
        self._last_index = record.index
        if action is None or not same_values(action, source[..., record.index, :]):
            raise InvariantViolation(f"tick {record.tick}: executed action differs from chunk "
                                     f"{record.chunk}[{record.index}]")

    def on_arrival(self, chunk_id: int, committed: Array | None,
                   executed: list[tuple[TickRecord, Array]]) -> None:
        n = 0 if committed is None else committed.shape[-2]
        for j, (record, action) in enumerate(executed[:n]):
            if record.kind != "committed" or not same_values(action, committed[..., j, :]):
                raise InvariantViolation(
                    f"chunk {chunk_id}: tick {record.tick} (kind {record.kind!r}) executed while "
                    f"it computed does not equal its conditioning prefix[{j}]")
