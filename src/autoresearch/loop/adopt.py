"""Lines that share their best: take up another line's best when it beats this one's by more than the
noise (`loop.adopt_from`), and publish this line's best to the exchange folder (`loop.exchange`) for lines
on other machines (docs/loop.md, "Runs that share their best")."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from autoresearch.decide import same_code
from autoresearch.decide.measured import current_runs
from autoresearch.decide.stats import standard_error
from autoresearch.loop import exchange
from autoresearch.loop.line import Line, named
from autoresearch.loop.propose import Proposer
from autoresearch.store import Experiment, Status


class Adopter:
    def __init__(self, line: Line, proposer: Proposer, protocol_id: str) -> None:
        self.line, self.proposer, self.protocol_id = line, proposer, protocol_id
        self._published: tuple | None = None  # the best (id, runs) this line last wrote to the exchange folder

    @property
    def exchange_dir(self) -> Path | None:
        folder = self.line.config.loop.exchange
        return Path(os.path.expandvars(folder)).expanduser().resolve() if folder else None

    def adopt(self) -> bool:
        """Take up the best of another line when it beats this line's best by more than the noise: its
        editable files, as one change on this line's best, run and judged here like any proposal. True if an
        experiment ran."""
        line, worktree = self.line, self.line.worktree
        offer = self.offer()
        if offer is None:
            return False
        parent = worktree.head()
        try:
            editable = line.config.loop.editable
            files = offer.files if offer.files is not None else worktree.files_at(offer.commit or "", editable)
            worktree.put_files(files, editable)
        except ValueError as err:  # an exchange entry with files this task does not let the agent edit
            worktree.discard_changes()
            line.store.set_state(self._seen_key(offer), True)
            line.on_event({"event": "adopt_refused", "source": offer.source, "error": str(err)})
            return False
        if not worktree.changed_files() or line.store.same_code(line.tag, line.code_hash()) is not None:
            worktree.discard_changes()  # code this line has measured: its own best, or one it dropped
            line.store.set_state(self._seen_key(offer), True)
            return False
        line.on_event({"event": "adopt", "source": offer.source, "seq": offer.seq, "metric": offer.value,
                       "metric_name": line.config.metric.name})
        description = f"adopt the best of {offer.source} (#{offer.seq}: {offer.description.splitlines()[0][:120]})"
        self.proposer.submit(parent, description, {"adopted_from": offer.source, "adopted_seq": offer.seq,
                                                   **self.proposer.steered_by(line.program())},
                             agent=f"adopt:{offer.source}")
        return True

    def offer(self) -> exchange.Offer | None:
        """The best among the other lines' (`_offers`) that beats this line's best by more than a first run must
        to be judged at all (the confirm rule's gate; the strict rule: by any amount); None if none does. A
        best whose code this line has measured already is passed over."""
        line = self.line
        best = line.incumbent()
        if not line.config.loop.adopt_from or best is None or line.worktree.head() != best.commit:
            return None
        ours = current_runs(line.store, best)
        if not ours or self._since_keep(best) < line.config.loop.adopt_after:
            return None
        margin = 0.0
        noise = line.noise() if line.rule.weighs_noise else None
        if noise is not None and noise.known:
            thresholds = line.rule.thresholds
            margin = thresholds.gate_z * standard_error(noise, 1, len(ours), thresholds)
        fresh = [o for o in self._offers() if not line.store.get_state(self._seen_key(o), False)
                 and not (o.code_hash and line.store.same_code(line.tag, o.code_hash) is not None)]
        return exchange.best_offer(fresh, sum(ours) / len(ours), margin, maximize=line.config.metric.maximize)

    def _since_keep(self, best: Experiment) -> int:
        """How many experiments this line has finished since its best was kept (rejected proposals count)."""
        return sum(1 for e in self.line.experiments() if e.seq > best.seq and e.finished)

    def _offers(self) -> list[exchange.Offer]:
        """The bests of the other lines that `loop.adopt_from` names: of this folder's lines trained for the
        same budget, and with `loop.exchange`, of the lines whose entries are in the exchange folder with this
        task's protocol."""
        line = self.line
        wanted = line.config.loop.adopt_from
        offers = []
        for tag in line.named_runs():
            if not line.same_budget(tag):
                continue
            kept = [e for e in line.store.experiments(tag) if e.status == Status.KEEP and e.commit]
            runs = current_runs(line.store, kept[-1]) if kept else []
            if runs:
                offers.append(exchange.Offer(source=tag, seq=kept[-1].seq, description=kept[-1].description,
                                             runs=tuple(runs), code_hash=kept[-1].code_hash, commit=kept[-1].commit))
        if self.exchange_dir is not None:
            for offer in exchange.read_offers(self.exchange_dir, self.protocol_id, exclude=self._entry_name()):
                if named(offer.source, wanted) or named(offer.source.split("@")[0], wanted):
                    # the hash is made here: another Python may parse the same code into another tree
                    offers.append(dataclasses.replace(offer, code_hash=same_code.code_hash(offer.files or {})))
        return offers

    def _seen_key(self, offer: exchange.Offer) -> str:
        return f"adopt-seen:{self.line.tag}:{offer.source}:{offer.code_hash or offer.commit}"

    def _entry_name(self) -> str:
        return exchange.entry_name(self.line.tag)

    def publish(self) -> None:
        """Write this line's best to the exchange folder, for lines on other machines; a folder that cannot be
        written is reported, and the loop goes on."""
        line = self.line
        best = line.incumbent()
        if self.exchange_dir is None or best is None or not best.commit:
            return
        runs = current_runs(line.store, best)
        if not runs or self._published == (best.id, runs):
            return  # written already, as it is now
        files = line.worktree.files_at(best.commit, line.config.loop.editable)
        if not files:
            return
        content = exchange.entry(self._entry_name(), self.protocol_id, best.seq, best.description, runs,
                                 same_code.code_hash(files), files)
        try:
            exchange.publish(self.exchange_dir, content)
            self._published = (best.id, runs)
        except OSError as err:
            line.on_event({"event": "exchange_failed", "folder": str(self.exchange_dir), "error": str(err)})
