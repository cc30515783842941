"""`ablate`'s one line over the whole sweep: runs done / total, the current stage, and an ETA.

The ETA is the remaining runs' estimated seconds (harness/estimates.py: calibrated step rate and
encode rate) scaled by how the finished runs compared with their own estimates; before a run has
finished it is the plain estimate. Each log line of the pipeline passes through `log`, which
prints it and redraws the status line under it (on a terminal; elsewhere one status line is
printed per run start).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class SweepProgress:
    def __init__(self, plans: list[Any], estimates: dict[str, Any] | None, stream: TextIO | None = None) -> None:
        self.plans = plans
        self.total = len(plans)
        self.done = 0
        self.stage = "starting"
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.estimated = [self._seconds(estimates, p) for p in plans]
        self.started = time.perf_counter()
        self.run_started = self.started
        self.spent_done = 0.0  # seconds the finished runs took
        self.estimated_done = 0.0  # and what they were estimated to take

    @staticmethod
    def _seconds(estimates: dict[str, Any] | None, plan: Any) -> float | None:
        e = (estimates or {}).get(plan.variant.name)
        if e is None or e.train_seconds is None:
            return None
        return (e.train_seconds or 0.0) + (e.eval_seconds or 0.0)

    def eta(self) -> float | None:
        remaining = self.estimated[self.done:]
        if any(r is None for r in remaining):
            return None
        scale = self.spent_done / self.estimated_done if self.estimated_done else 1.0
        left = sum(r for r in remaining if r is not None) * scale
        if self.done < self.total and self.estimated[self.done]:  # the current run is partly done
            left -= min(time.perf_counter() - self.run_started, (self.estimated[self.done] or 0) * scale)
        return max(left, 0.0)

    def line(self) -> str:
        from harness.report.formatting import duration

        eta = self.eta()
        elapsed = time.perf_counter() - self.started
        return (f"sweep: {self.done}/{self.total} runs done · {self.stage} · elapsed {duration(elapsed)} · "
                f"ETA {'?' if eta is None else duration(eta)}")

    def _finish_run(self) -> None:
        now = time.perf_counter()
        if self.done < self.total and self.estimated[self.done] is not None:
            self.spent_done += now - self.run_started
            self.estimated_done += self.estimated[self.done] or 0.0
        self.done += 1
        self.run_started = now

    def log(self, message: str) -> None:
        text = str(message)
        if text.startswith("[") and "/" in text.split("]")[0]:  # "[i/N] variant (seed …)": a run starts
            index = int(text[1:].split("/")[0]) - 1
            while self.done < index:
                self._finish_run()
            self.stage = f"run {index + 1}: {text.split('] ', 1)[-1].split(' (')[0]} data"
        else:
            word = text.strip().split(" ")[0] if text.strip() else ""
            if word in {"data", "train", "eval", "contamination"}:
                self.stage = f"{self.stage.rsplit(' ', 1)[0]} {word}"
        if self.tty:
            self.stream.write("\r\033[K")
        print(text, flush=True)
        if self.tty:
            self.stream.write(self.line())
            self.stream.flush()
        elif text.startswith("["):
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        while self.done < self.total:
            self._finish_run()
        self.stage = "finished"
        if self.tty:
            self.stream.write("\r\033[K")
        print(self.line(), file=self.stream, flush=True)
