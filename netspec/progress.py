"""Training progress: a rich progress bar on a terminal, plain lines otherwise (CI, pipes)."""

from __future__ import annotations

import sys
import time

# nouns whose plural is not noun + "s"
IRREGULAR_PLURALS = {"class": "classes", "process": "processes", "entry": "entries", "axis": "axes"}


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 epoch`, `15 epochs`, `1,437 images`: every count netspec prints goes through here, so
    that a count of one never reads "1 epochs"."""
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {plural_form or IRREGULAR_PLURALS.get(noun, noun + 's')}"


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        self._task = None
        self._last_plain = 0.0

    def say(self, text: str) -> None:
        if self.enabled:
            (self._bar.console.print(text, highlight=False, markup=False) if self._bar
             else print(text, file=self.stream, flush=True))

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        if not self.enabled:
            return
        self._last_plain = time.monotonic()
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=steps, completed=done, status="")

    def step(self, done: int, steps: int, loss: float, accuracy: float) -> None:
        if not self.enabled:
            return
        status = f"loss {loss:.4f} acc {accuracy * 100:.1f}%"
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
        elif time.monotonic() - self._last_plain > 30:  # long epochs still show signs of life in CI logs
            self._last_plain = time.monotonic()
            self.say(f"  step {done}/{steps}  {status}")

    def end_epoch(self, line: str) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self.say(line)
