"""The worker's consumer sends buffered task events once per EVENT_FLUSH_S, not once per event."""

from collections.abc import Callable

from workers.consumer import EVENT_FLUSH_S, Consumer


class Hub:
    def __init__(self) -> None:
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append((delay, callback))


def test_events_of_a_tenth_of_a_second_go_out_together() -> None:
    consumer = Consumer.__new__(Consumer)  # the flushing logic alone: no broker, no worker
    consumer.hub = Hub()
    flushes: list[int] = []
    consumer._flush_events = lambda: flushes.append(1)

    for _ in range(3):  # received, started, succeeded
        consumer.on_send_event_buffered()
    assert [delay for delay, _ in consumer.hub.timers] == [EVENT_FLUSH_S]
    assert flushes == []

    consumer.hub.timers.pop()[1]()
    assert flushes == [1]
    consumer.on_send_event_buffered()  # the next event schedules the next flush
    assert len(consumer.hub.timers) == 1
