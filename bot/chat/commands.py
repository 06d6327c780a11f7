"""The `/tasks` grammar (SPEC §10), parsed once for every chat platform."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ledger.exceptions import LedgerError
from ledger.status import NotifyPolicy, Runtime

HELP_LINE = (
    "Usage: /tasks [all|mine|running|failed|lost|queued|runtime:R] | show REF | "
    "cancel REF [reason] | notify REF done_only|state_changes|silent | retry REF | "
    "dismiss REF | follow REF | unfollow REF | audit | help"
)

#: Board filters besides the bare board (this channel) and `runtime:R`.
BOARD_FILTERS = ("all", "mine", "running", "failed", "lost", "queued")


class Verb(StrEnum):
    BOARD = "board"
    SHOW = "show"
    CANCEL = "cancel"
    NOTIFY = "notify"
    RETRY = "retry"
    DISMISS = "dismiss"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    AUDIT = "audit"
    HELP = "help"


#: Verbs that act on one task and need a REF.
REF_VERBS = frozenset(
    {Verb.SHOW, Verb.CANCEL, Verb.NOTIFY, Verb.RETRY, Verb.DISMISS, Verb.FOLLOW, Verb.UNFOLLOW}
)
#: Verbs that change something and are reserved to the requester and admins.
MUTATING_VERBS = frozenset({Verb.CANCEL, Verb.NOTIFY, Verb.RETRY, Verb.DISMISS})

MAX_REF = 200
MAX_REASON = 1000


class CommandError(LedgerError):
    """`/tasks` text that does not parse. `problem` is short and specific; `help` the usage."""

    http_status = 400

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.help = HELP_LINE
        super().__init__(f"{problem}\n{HELP_LINE}")


@dataclass(frozen=True, slots=True)
class Command:
    verb: Verb
    #: The task reference for REF verbs.
    ref: str | None = None
    #: Board filter: None (this channel), all, mine, running, failed, lost, queued, runtime:R.
    filter: str | None = None
    #: Cancel reason.
    reason: str | None = None
    #: Notify policy.
    policy: NotifyPolicy | None = None

    @property
    def mutates(self) -> bool:
        return self.verb in MUTATING_VERBS


def parse_filter(word: str | None) -> str | None:
    """Validate a board filter word (None or empty: the channel board)."""
    if word is None or not word.strip():
        return None
    word = word.strip().lower()
    if word in BOARD_FILTERS:
        return word
    if word.startswith("runtime:"):
        name = word.split(":", 1)[1]
        try:
            return f"runtime:{Runtime(name).value}"
        except ValueError:
            choices = ", ".join(r.value for r in Runtime)
            raise CommandError(f"unknown runtime {name[:40]!r}; runtimes: {choices}") from None
    raise CommandError(f"unknown subcommand {word[:40]!r}")


def _ref(verb: Verb, words: list[str]) -> str:
    if not words:
        raise CommandError(f"`{verb.value}` needs a task reference (id, id prefix or run id)")
    ref = words[0]
    if len(ref) > MAX_REF:
        raise CommandError(f"task reference is too long ({len(ref)} characters)")
    return ref


def parse_command(text: str | None) -> Command:
    """Parse the text after `/tasks`. Raises CommandError with the help line appended."""
    words = (text or "").split()
    if not words:
        return Command(Verb.BOARD)
    head, rest = words[0].lower(), words[1:]
    if head == "board":  # Discord's `/tasks board [filter]`; accepted on Slack too
        if len(rest) > 1:
            raise CommandError("`board` takes at most one filter")
        return Command(Verb.BOARD, filter=parse_filter(rest[0] if rest else None))
    try:
        verb = Verb(head)
    except ValueError:
        if rest:
            raise CommandError(f"unknown subcommand {head[:40]!r}") from None
        return Command(Verb.BOARD, filter=parse_filter(head))
    if verb in (Verb.AUDIT, Verb.HELP):
        if rest:
            raise CommandError(f"`{verb.value}` takes no arguments")
        return Command(verb)
    ref = _ref(verb, rest)
    if verb is Verb.CANCEL:
        reason = " ".join(rest[1:]).strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            raise CommandError(f"cancel reason is too long ({len(reason)} > {MAX_REASON})")
        return Command(verb, ref=ref, reason=reason)
    if verb is Verb.NOTIFY:
        if len(rest) < 2:
            raise CommandError("`notify` needs a policy: done_only, state_changes or silent")
        if len(rest) > 2:
            raise CommandError("`notify` takes a task reference and one policy")
        try:
            policy = NotifyPolicy(rest[1].lower())
        except ValueError:
            raise CommandError(
                f"unknown notify policy {rest[1][:40]!r}; use done_only, state_changes or silent"
            ) from None
        return Command(verb, ref=ref, policy=policy)
    if len(rest) > 1:
        raise CommandError(f"`{verb.value}` takes one task reference")
    return Command(verb, ref=ref)
