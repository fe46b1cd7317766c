"""fsfreeze: a libvirt guest's file systems frozen by its QEMU guest agent around the ZFS
snapshot (guest-fsfreeze-freeze through libvirt), thawed afterwards.

What is read back: the agent says how many file systems it froze (none frozen is no
freeze), and at the thaw how many it thawed; fewer thawed than frozen means something
thawed the guest before the end (a reboot, another tool, a Windows VSS freeze that gave up
after its 10 s), so the freeze is not claimed for the ZFS snapshot. A frozen guest never
thaws by itself: the thaw is the undo, journaled like every other, so end or reconcile
thaws it whatever crashed in between.
"""

from __future__ import annotations

from ..model import BlockerKind, Consistency, Provider, Strategy
from .base import ActionKind, Operations, Step, StrategyModule, Undone, UndoOperations, Verdict
from .options import LadderOptions


def _count(result: str | None) -> int | None:
    return int(result) if result is not None and result.isdigit() else None


class Fsfreeze(StrategyModule):
    name = Strategy.FSFREEZE
    yields = Consistency.QUIESCED
    summary = "libvirt guest's file systems frozen by its guest agent, thawed afterwards"
    providers = frozenset({Provider.LIBVIRT})
    pruned_by = {kind: "{blocker}" for kind in (
        BlockerKind.NO_AGENT_CHANNEL, BlockerKind.AGENT_NOT_ANSWERING, BlockerKind.AGENT_REFUSES_FREEZE,
        BlockerKind.GUEST_PAUSED)}
    caveats = {BlockerKind.PASSTHROUGH: "what the guest writes through it is not in the ZFS snapshot"}
    action = ActionKind.FREEZE
    undo_failure = "thaw_failed"

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        return ops.freeze()

    def judge(self, step: Step) -> Verdict | None:
        if _count(step.result) == 0:
            return Verdict(Consistency.CRASH, "crash-consistent: the guest agent froze no file system "
                           "(none it can freeze is mounted)", "ignored")
        return None

    def answered(self, step: Step) -> str | None:
        count = _count(step.result)
        return None if count is None else f"the guest agent froze {count} file system(s)"

    def undo(self, ops: UndoOperations, snapshot_id: str | None) -> Undone:
        """``snapshot_id`` is what the freeze answered (how many it froze), when known."""
        step = ops.thaw()
        if not step.ok and not step.gone:
            return Undone(self.undo_failure, closed=False, error=step.message)
        frozen, thawed = _count(snapshot_id), _count(step.result)
        if step.gone or frozen is None or thawed is None or thawed >= frozen:
            return Undone("not_running" if step.gone else "thawed", closed=True)
        return Undone("thawed", closed=True, verdict=Verdict(
            Consistency.CRASH, f"crash-consistent: the guest agent thawed {thawed} of the {frozen} file "
            "system(s) it froze, so the freeze did not hold until the end (something thawed the guest "
            "earlier)"))
