"""Run the demo's stages as subprocesses of the real CLIs, streaming their output, resumably.

A stage is a `python -m MODULE FLAGS...` command plus the file it writes last. After a stage
succeeds the runner records its command line under `OUT/stages/NAME.json`; a rerun skips a stage
whose record matches the same command and whose final file exists, so an interrupted demo resumes
at the first stage that did not finish. Once one stage runs, every later stage runs too (the chain
is linear: a stage's inputs are earlier stages' outputs), so a changed flag redoes what it changes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence, TextIO


class StageFailed(RuntimeError):
    """A stage exited non-zero (or its final output is missing afterwards)."""

    def __init__(self, name: str, detail: str, log_path: str) -> None:
        super().__init__(f"stage {name!r} failed: {detail} (full log: {log_path})")
        self.stage = name


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the chain: `python -m module *flags`, complete once `done_file` exists."""

    name: str
    module: str
    flags: tuple[str, ...]
    done_file: str

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.flags]


def write_atomic(path: str, text: str) -> None:
    """Write text to `path` through a temporary file and a rename (never half-written)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Runner:
    """Runs stages in order under one output folder, logging each to `OUT/logs/NAME.log`."""

    def __init__(self, out_dir: str, stream: TextIO = sys.stdout, env: Optional[dict] = None) -> None:
        self.out_dir = out_dir
        self.stream = stream
        self.env = env
        self.seconds: dict[str, float] = {}  # per stage, this run's or the recorded time of a skipped one
        self.ran_any = False  # once a stage has run, later stages' inputs may have changed

    def _record_path(self, name: str) -> str:
        return os.path.join(self.out_dir, "stages", f"{name}.json")

    def is_done(self, name: str, command: Sequence[str], done_file: str) -> bool:
        """True when this exact command completed before, its final file is still there, and no
        earlier stage ran in this session."""
        if self.ran_any:
            return False
        try:
            with open(self._record_path(name)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return False
        done = record.get("command") == list(command) and os.path.exists(done_file)
        if done:
            self.seconds[name] = float(record.get("seconds", 0.0))  # as measured when it ran
        return done

    def _start(self, name: str) -> float:
        """Forget the stage's old record (it is about to change its outputs) and time it."""
        self.ran_any = True
        if os.path.exists(self._record_path(name)):
            os.remove(self._record_path(name))
        return time.monotonic()

    def _finish(self, name: str, command: Sequence[str], started: float) -> None:
        self.seconds[name] = time.monotonic() - started
        write_atomic(self._record_path(name), json.dumps({"command": list(command), "seconds": self.seconds[name]}))
        self.say(f"== {name}: done in {self.seconds[name]:.1f} s")

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def run(self, stage: Stage) -> None:
        """Run a CLI stage unless already complete; raise StageFailed naming it if it fails."""
        command = stage.argv()
        if self.is_done(stage.name, command[1:], stage.done_file):
            self.say(f"== {stage.name}: already complete, skipped")
            return
        log_path = os.path.join(self.out_dir, "logs", f"{stage.name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        self.say(f"== {stage.name}: {' '.join(['python', *command[1:]])}")
        started = self._start(stage.name)
        with open(log_path, "w") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=self.env
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                self.stream.write(f"  [{stage.name}] {line}")
                self.stream.flush()
            code = proc.wait()
        if code != 0:
            raise StageFailed(stage.name, f"exit status {code}", log_path)
        if not os.path.exists(stage.done_file):
            raise StageFailed(stage.name, f"exited 0 but did not write {stage.done_file}", log_path)
        self._finish(stage.name, command[1:], started)

    def run_local(self, name: str, key: Sequence[str], done_file: str, fn: Callable[[], None]) -> None:
        """Run an in-process step (`key` identifies its inputs) with the same skip/record rules."""
        if self.is_done(name, key, done_file):
            self.say(f"== {name}: already complete, skipped")
            return
        self.say(f"== {name}")
        started = self._start(name)
        try:
            fn()
        except Exception as e:  # any failure of the step is this stage's failure
            raise StageFailed(name, f"{type(e).__name__}: {e}", "(in-process step: see the traceback above)") from e
        self._finish(name, key, started)
