"""`netspec train`: the seeds' training loop, done properly.

Data lives on the training device and is augmented per batch there; progress shows while it
runs; every epoch writes metrics, curves and an atomic checkpoint; `--resume` continues
bit-for-bit (on CPU, same seed) from the last checkpoint, also mid-epoch after Ctrl-C, and
finishes what an interrupt left undone (an epoch's validation, the end-of-run outputs). What a
resume may change, and how a new length re-plans the schedule: netspec/train/resume.py.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from netspec.compile.aux_modules import with_aux_losses
from netspec.data.batches import Batches
from netspec.errors import OptionError, RunError, RunStopped
from netspec.progress import Progress, plural
from netspec.train import checkpoint as ckpt
from netspec.train.config import TrainConfig, check_processes
from netspec.train.controls import clip_gradients, early_stop_reason, restore_scaler, scaler_counters
from netspec.train.loggers import RunLog
from netspec.train.metrics import accuracy, per_class_accuracy, per_class_table, plot_curves, read_jsonl, validate_top5
from netspec.train.schedule import learning_rate
from netspec.train.setup import Setup, prepare

PLOT_INTERVAL = 10.0  # seconds


@dataclass
class EpochTotals:
    loss: float = 0.0  # summed over samples
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class Position:
    """Where the run is: `step` steps of `epoch` done; `ended`: its end (validation, metrics,
    best) too. All steps done but not the end: a Ctrl-C on the epoch's last step."""

    epoch: int = 1
    step: int = 0
    global_step: int = 0
    best_val_acc: float = -1.0
    totals: EpochTotals = field(default_factory=EpochTotals)
    ended: bool = False
    best_epoch: int = 0  # of best_val_acc: early stopping counts from it

    def next_epoch(self) -> "Position":
        return Position(self.epoch + 1, 0, self.global_step, self.best_val_acc, best_epoch=self.best_epoch)


def train(spec_path: Path, overrides: dict, set_vars: list[str] | None = None, out: Path | None = None,
          resume: bool = False, init_from: Path | None = None, progress: Progress | None = None) -> Path:
    """Train a spec; return the run directory. Raises a NetspecError (bad input) or RunStopped.
    The run directory stays locked against other trainings until this returns."""
    setup = prepare(spec_path, overrides, set_vars or [], out, resume, init_from, progress or Progress())
    try:
        Trainer(setup).run()
    finally:
        setup.release()
    return setup.run_dir


class Trainer:
    """One training run from a Setup: its steps, epoch ends, checkpoints, resume and stopping."""

    def __init__(self, setup: Setup):
        self.config: TrainConfig = setup.config
        config = setup.config
        self.progress, self.say, self.banner = setup.progress, setup.progress.say, setup.banner
        self.process, self.target, self.card = setup.process, setup.target, setup.card
        self.run_dir, self.classes = setup.target.directory, list(setup.data.classes)
        learner = setup.learner
        self.model, self.bare_model, self.optimizer = learner.model, learner.bare_model, learner.optimizer
        device, data, normalize = setup.process.device, setup.data, config.augment.normalize
        self.train_batches = Batches(data, "train", config.batch_size, device, config.augment, normalize,
                                     setup.process.rank, setup.process.world, config.workers, config.channels_last)
        self.val_batches = Batches(data, "val", config.batch_size, device, None, normalize,
                                   workers=config.workers, channels_last=config.channels_last)
        if len(self.train_batches) == 0:
            raise OptionError.at(None, "--batch-size", f"batch size {config.batch_size} is larger than the "
                                 f"{len(data.train)} training samples", "lower --batch-size")
        check_processes(config.batch_size, setup.process.world)
        self.steps = len(self.train_batches)
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        self.augment_rng = torch.Generator().manual_seed(config.seed + 1)
        self.position = Position()
        self.stop_requested = None
        self.plotted_at = float("-inf")
        self.last_validation: tuple[int, float, torch.Tensor] | None = None  # epoch, accuracy, confusion
        self.log = RunLog(self.run_dir, config.tensorboard, config.log_every, setup.process.is_main)
        self.stopped_early: str | None = None  # why, once --patience stops the run

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> None:
        if self.target.resume_from is not None:
            self.restore(self.target.resume_from)
            if self.position.step == 0:  # mid-epoch, the epoch is finished first: patience counts at its end
                self.stopped_early = self.early_stop(self.position.epoch - 1)
            if self.position.epoch > self.config.epochs or self.stopped_early:
                self.complete_finished_run()  # nothing trains: config.json and resumes.jsonl stay as they were
                return
            self.announce_resume(self.target.resume_from)
        previous = self._install_signal_handlers()  # before the banner: a Ctrl-C right after it saves the run
        self.say(self.banner(self.steps))
        try:
            while self.position.epoch <= self.config.epochs and not self.stopped_early:
                self.run_epoch()
                self.position = self.position.next_epoch()
        finally:
            self._restore_signal_handlers(previous)
            self.log.close()
        self.finish()

    def early_stop(self, epoch: int) -> str | None:
        """Why --patience stops the run after `epoch` (ended) before its last epoch, if it does."""
        p = self.position
        return None if epoch >= self.config.epochs else early_stop_reason(self.config.patience, epoch, p.best_epoch,
                                                                          p.best_val_acc)

    def run_epoch(self) -> None:
        self.progress.start_epoch(self.position.epoch, self.config.epochs, self.steps, self.position.step)
        # The epoch's record shows the rate of its last step: the one in the optimizer, which a
        # resume restored, when no step is left (a resume after a Ctrl-C on the last step).
        lr = self.train_steps() if self.position.step < self.steps else self.optimizer.param_groups[0]["lr"]
        self.end_epoch(lr)

    def train_steps(self) -> float:
        """The rest of the epoch's steps; returns the learning rate of the last one."""
        epoch, config, totals = self.position.epoch, self.config, self.position.totals
        model = self.model.train()
        started = time.monotonic()
        loss_sum = torch.zeros((), device=self.process.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.process.device, dtype=torch.int64)
        for x, y in self.train_batches.epoch(epoch, config.seed, self.position.step, self.augment_rng):
            lr = learning_rate(config, self.position.global_step, self.steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, logits = self.train_step(model, x, y)
            loss_sum += loss.detach().double() * len(y)  # on the device: no sync per step
            correct += (logits.argmax(1) == y).sum()
            totals.seen += len(y)
            self.position.step += 1
            self.position.global_step += 1
            self.log.step(self.position.global_step, loss)
            report = self.position.step % 10 == 0 or self.position.step == self.steps
            save = self.stop_requested or (config.checkpoint_every
                                           and self.position.global_step % config.checkpoint_every == 0)
            if report or save:  # read the running loss only here; never checkpoint past a NaN
                running = loss_sum.item()
                if not math.isfinite(running):
                    self.diverged(running)
                if report:
                    self.progress.step(self.position.step, self.steps, (totals.loss + running) / totals.seen,
                                         (totals.correct + correct.item()) / totals.seen)
            if save:
                self._fold(totals, loss_sum, correct, started)
                loss_sum.zero_(), correct.zero_()
                started = time.monotonic()
                self.save_checkpoint(best=False)
                if self.stop_requested:
                    self.interrupted()
        self._fold(totals, loss_sum, correct, started)
        return lr

    def train_step(self, model, x, y):
        with torch.autocast(self.process.device.type, dtype=self.process.amp_dtype,
                            enabled=self.process.amp_dtype is not None):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
            objective = with_aux_losses(loss, self.model, y, self.config.label_smoothing)  # + Σ weight·CE(aux)
        # DDP averages the processes' gradients; their shares of the global batch may differ by one sample, so
        # each process's mean is weighted by its share: the step is the gradient of the global batch's mean.
        if self.process.world > 1:
            objective = objective * (len(y) * self.process.world / self.config.batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            clip_gradients(self.optimizer, self.config.clip_grad, self.scaler)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            objective.backward()
            clip_gradients(self.optimizer, self.config.clip_grad)
            self.optimizer.step()
        return self._logged_loss(loss, logits, y), logits

    def _logged_loss(self, loss, logits, y):
        """The train loss logged: plain cross-entropy of the main output, like the validation loss, so
        the two compare; the optimiser minimises it smoothed (label smoothing) plus any aux heads' terms."""
        if not self.config.label_smoothing:
            return loss
        with torch.no_grad():
            return F.cross_entropy(logits.detach().float(), y)

    def _fold(self, totals: EpochTotals, loss_sum, correct, started: float) -> None:
        totals.loss += loss_sum.item()
        totals.correct += int(correct.item())
        totals.seconds += time.monotonic() - started

    # -- epoch end ------------------------------------------------------------------------------
    def end_epoch(self, lr: float) -> None:
        totals = self.process.reduce_totals(self.position.totals)
        val_loss, val_acc, confusion, top5 = self.evaluate(top5=True)
        self.last_validation = (self.position.epoch, val_acc, confusion)
        record = {
            "epoch": self.position.epoch, "train_loss": totals.loss / max(totals.seen, 1),
            "train_acc": totals.correct / max(totals.seen, 1), "val_loss": val_loss, "val_acc": val_acc,
            **({} if top5 is None else {"val_top5": top5}),
            "lr": lr, "images_per_s": totals.seen / max(totals.seconds, 1e-9), "seconds": totals.seconds,
        }
        improved = val_acc > self.position.best_val_acc
        if improved:
            self.position.best_val_acc, self.position.best_epoch = val_acc, self.position.epoch
        self.log.epoch(record, self.position.global_step)
        self.stopped_early = self.early_stop(self.position.epoch)
        if self.process.is_main:
            self.plot(final=self.position.epoch == self.config.epochs or bool(self.stopped_early))
        self.position.ended = True
        self.save_checkpoint(best=improved)
        self.progress.end_epoch(
            f"epoch {record['epoch']:>3}/{self.config.epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc'] * 100:6.2f}%  val loss {val_loss:.4f} acc {val_acc * 100:6.2f}%"
            + ("" if top5 is None else f" top-5 {top5 * 100:6.2f}%") + f"  lr {lr:.3g}  "
            f"{record['images_per_s']:,.0f} img/s" + ("  *best" if improved else ""))

    def plot(self, final: bool = False) -> None:
        """curves.png, redrawn at most every PLOT_INTERVAL s (a plot costs ~0.2 s, more than a
        LeNet epoch) and always at the end."""
        if final or time.monotonic() - self.plotted_at >= PLOT_INTERVAL:
            plot_curves(read_jsonl(self.run_dir / "metrics.jsonl"), self.run_dir / "curves.png")
            self.plotted_at = time.monotonic()

    def evaluate(self, model: torch.nn.Module | None = None, top5: bool = False) -> tuple:
        """Validation loss, accuracy and the confusion matrix (every process sees all of it); with
        `top5`, also the top-5 accuracy (None with fewer than 10 classes)."""
        model = self.model if model is None else model  # (a Sequential with no layers is falsy)
        loss_sum, confusion, hits = validate_top5(model, self.val_batches, len(self.classes), self.process.amp_dtype)
        seen = max(int(confusion.sum()), 1)
        result = (loss_sum / seen, accuracy(confusion), confusion)
        return result + (None if hits is None else hits / seen,) if top5 else result

    # -- run end --------------------------------------------------------------------------------
    def finish(self) -> None:
        """per_class.json and the per-class table, of the best weights: those `netspec eval` and
        `export` use unless told otherwise, so the three agree."""
        if not self.process.is_main:
            return
        weights, epoch, val_acc, confusion = self.final_validation()
        names = self.classes
        per_class = dict(zip(names, per_class_accuracy(confusion)))
        record = {"weights": weights, "epoch": epoch, "val_acc": val_acc, "per_class": per_class,
                  "confusion": confusion.tolist(), "classes": names}
        ckpt.atomic_write_text(self.run_dir / "per_class.json", json.dumps(record, indent=2) + "\n")
        self.say(f"per-class validation accuracy ({weights} weights, epoch {epoch}; eval and export use the "
                 f"best by default):\n" + per_class_table(names, confusion))
        self.say(f"done: {self.run_dir}  (best val acc {self.position.best_val_acc * 100:.2f}%, "
                 "weights in last.safetensors / best.safetensors)" + (f"; {self.stopped_early}" if self.stopped_early
                                                                       else ""))

    def final_validation(self) -> tuple[str, int, float, torch.Tensor]:
        """(which weights, epoch, accuracy, confusion) at the end: the best, validated again unless last."""
        best = self.run_dir / "best.safetensors"
        if not best.exists():  # only if it was deleted: say what the numbers are of
            epoch = self.last_validation[0] if self.last_validation else self.position.epoch - 1
            return ("last", epoch, *self.evaluate(self.bare_model)[1:])
        epoch = ckpt.read_metadata(best).get("epoch")
        if self.last_validation is not None and self.last_validation[0] == epoch:
            return ("best", *self.last_validation)
        self.bare_model.load_state_dict(ckpt.load_weights(best))  # every checkpoint is written: free to replace
        return ("best", epoch, *self.evaluate(self.bare_model)[1:])

    def complete_finished_run(self) -> None:
        """A resumed run with no epoch left: write what its end did not (a Ctrl-C after the last
        epoch's checkpoint), or say how to train it further."""
        missing = [name for name in ("per_class.json", "curves.png") if not (self.run_dir / name).exists()]
        done = f"{self.run_dir} already finished its {plural(self.config.epochs, 'epoch')}"
        if self.stopped_early:
            done, more = f"{self.run_dir} already {self.stopped_early}", "give a larger --patience (0: off)"
        if not missing:
            self.say(f"{done}; {more if self.stopped_early else 'give --epochs N'} to train it further")
            return
        self.say(f"{done}; writing what its end left out: {', '.join(missing)}")
        if self.process.is_main and "curves.png" in missing:
            self.plot(final=True)
        if "per_class.json" in missing:
            self.finish()

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, best: bool) -> None:
        if not self.process.is_main:
            return
        p = self.position
        counters = {"epoch": p.epoch, "step": p.step, "global_step": p.global_step, "best_val_acc": p.best_val_acc,
                    "totals": vars(p.totals), "steps_per_epoch": self.steps, "epoch_ended": p.ended,
                    "best_epoch": p.best_epoch}
        if (scaler := scaler_counters(self.scaler)) is not None:
            counters["grad_scaler"] = scaler
        state_name = f"state-{p.global_step:09d}.safetensors"
        ckpt.save_state(self.run_dir / state_name, self.optimizer, self._rng_states(), counters)
        meta = {**self.card.checkpoint_metadata(), "epoch": p.epoch, "step": p.step, "state": state_name,
                "complete": p.ended}
        tensors = ckpt.weight_tensors(self.bare_model)
        ckpt.save_weights(self.run_dir / "last.safetensors", tensors, meta)
        ckpt.prune_states(self.run_dir, keep=state_name)
        if best:
            ckpt.save_weights(self.run_dir / "best.safetensors", tensors, {**meta, "val_acc": p.best_val_acc})

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"torch": torch.get_rng_state(), "augment": self.augment_rng.get_state()}
        if torch.cuda.is_available():
            states.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        return states

    def restore(self, run_dir: Path) -> None:
        from netspec.train.resume import check_epochs, find_resumable

        found = find_resumable(run_dir, self.bare_model, self.optimizer, self.augment_rng, self.card.input_shape[0])
        counters = found.counters
        if not counters["epoch_ended"] and counters["steps_per_epoch"] != self.steps:  # batches would not line up
            raise RunError.at(None, "--resume", f"{found.path} stopped at step {counters['step']} of "
                               f"{counters['steps_per_epoch']}, but an epoch now has {self.steps} steps",
                               "the training data changed since; start a new run (--init-from RUN_DIR)")
        p = Position(counters["epoch"], counters["step"], counters["global_step"], counters["best_val_acc"],
                     EpochTotals(**counters["totals"]), best_epoch=counters["best_epoch"])
        if counters["epoch_ended"]:
            p = p.next_epoch()
        check_epochs(run_dir, self.config.epochs, p.epoch, p.step)  # before anything is loaded or written
        if found.note:
            self.say(found.note)
        found.apply(self.bare_model, self.optimizer, self.augment_rng)
        restore_scaler(self.scaler, counters.get("grad_scaler"))
        self.position = p
        self.log.restore(p.epoch, p.global_step)

    def announce_resume(self, run_dir: Path) -> None:
        """Where training goes on from, and what this resume changes (only for a run that trains on)."""
        p = self.position
        where = f"epoch {p.epoch}, step {p.step}/{self.steps}" if p.step else f"the start of epoch {p.epoch}"
        end = " (all its steps are done: its validation follows)" if p.step == self.steps else ""
        self.say(f"resuming {run_dir} from {where}{end}")
        if self.target.resumed is not None:
            self.record_resume(run_dir, p)

    def record_resume(self, run_dir: Path, p: Position) -> None:
        """Print what this resume changes, and the learning-rate jump a new --epochs makes; keep
        both in the run directory."""
        from netspec.train.resume import record_resume, resume_notes

        notes, jump = resume_notes(self.target.resumed, self.config, p.global_step, self.steps)
        for note in notes:
            self.say(note)
        if self.process.is_main:
            record_resume(run_dir, self.target.resumed, self.config,
                          {"epoch": p.epoch, "step": p.step, "global_step": p.global_step}, jump)

    # -- stopping -------------------------------------------------------------------------------
    def diverged(self, value: float) -> None:
        last = self.run_dir / "last.safetensors"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise RunStopped(f"error: training diverged: loss is {value} at epoch {self.position.epoch}, "
                         f"step {self.position.step + 1}; {kept}\n  hint: lower --lr (now {self.config.lr:g})", 3)

    def interrupted(self) -> None:
        if self.process.is_main and (self.run_dir / "metrics.jsonl").exists():
            self.plot(final=True)
        unvalidated = " (its validation runs on resume)" if self.position.step == self.steps else ""
        raise RunStopped(f"interrupted: saved {self.run_dir} at epoch {self.position.epoch}, step "
                         f"{self.position.step}/{self.steps}{unvalidated}; "
                         f"continue with `netspec train {self.target.spec_path} "
                         f"--resume --out {self.run_dir}`", 130)

    def _install_signal_handlers(self):
        def request_stop(signum, frame):
            self.stop_requested = signum
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread (e.g. called from a notebook worker)
                pass
        return previous

    def _restore_signal_handlers(self, previous) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

