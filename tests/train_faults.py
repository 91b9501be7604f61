"""Fault injection for the training tests, loaded through the trainer's callback extension point:
``EVOLCODER_TRAIN_CALLBACKS=train_faults:kill_after_step`` with ``PYTHONPATH`` holding tests/.

``EVOLCODER_TEST_KILL_AFTER_STEP``: "N" SIGKILLs the process at the end of optimizer step N (before
its checkpoint is saved); "N:TERM" sends SIGTERM instead (what SLURM sends on preemption).
``EVOLCODER_TEST_KILL_HOST``: only the ranks on this host do it (one node of a multi-node job);
``EVOLCODER_TEST_KILL_STAMP``: a file that gets the time of the kill (failure-detection timing).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)
ENV = "EVOLCODER_TEST_KILL_AFTER_STEP"


class KillAfterStep(TrainerCallback):
    trainer = None  # set by the trainer set-up once the Trainer exists

    def __init__(self, spec: str):
        step, _, sig = spec.partition(":")
        self.step = int(step)
        self.signal = signal.SIGTERM if sig.upper() == "TERM" else signal.SIGKILL

    def on_step_end(self, args, state, control, **kwargs):
        host = os.environ.get("EVOLCODER_TEST_KILL_HOST")
        if state.global_step == self.step and (not host or host == socket.gethostname()):
            if os.environ.get("EVOLCODER_TEST_KILL_STAMP"):
                with open(os.environ["EVOLCODER_TEST_KILL_STAMP"], "w", encoding="utf-8") as fh:
                    fh.write(f"{time.time()} {socket.gethostname()} rank {os.environ.get('RANK')}\n")
            log.warning("%s: sending %s to the process (test hook)", ENV, self.signal.name)
            for cb in self.trainer.callback_handler.callbacks if self.trainer else []:
                if getattr(cb, "jit_manager", None) is not None:
                    cb.jit_manager.kill_wait = 0  # checkpoint at the next step, not 3 s later
            os.kill(os.getpid(), self.signal)


def kill_after_step() -> KillAfterStep:
    return KillAfterStep(os.environ[ENV])
