"""Run a stage as DVC would, and SIGKILL it as soon as a checkpoint holds a given epoch.

``python -m tests.killed_run <folder> <epoch> <stage> [args...]`` runs ``stages.<stage>`` and,
right after the checkpoint in ``<folder>`` (as the stage names it) is saved with ``<epoch>``
epochs done, kills its own process with SIGKILL: the interruption no cleanup code survives,
at a point the test knows. Tests only; the stages carry no hook for it.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

from dllabs.training.resume import Checkpoint, TrainingState


def main() -> None:
    folder, epoch, stage, *args = sys.argv[1:]
    save = Checkpoint.save

    def save_then_die(self: Checkpoint, state: TrainingState) -> None:
        save(self, state)
        if self.folder == Path(folder) and state.epoch == int(epoch):
            os.kill(os.getpid(), signal.SIGKILL)

    Checkpoint.save = save_then_die  # type: ignore[method-assign]
    sys.argv = [f"stages.{stage}", *args]
    runpy.run_module(f"stages.{stage}", run_name="__main__")


if __name__ == "__main__":
    main()
