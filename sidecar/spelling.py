"""Key spelling: what a case-folding collector reads is what trackgate judged (SPEC §3.3).

trackgate reads the fields it enforces by their exact spelling. Collectors
decode more loosely: Go's `encoding/json` matches a struct field
case-insensitively (folding the long s U+017F to `s` and the Kelvin sign
U+212A to `k` too) and lets the last duplicate win; C-string collectors stop
at a NUL. So in every object a
dialect interprets, a key that folds to one of that object's field names
without being it, or two keys that fold alike, rejects the request with 400
`malformed_payload`; an id or property container with more than
`server.limits.max_names_per_object` keys gets 413 `payload_too_large`.

A dialect declares, per object it interprets, the field names it reads there
(`Fields("customer_ids", "event_type", …)`; `NAMES` for a container whose every
key is a name) and calls `check` / `check_names` on each such object; the
messages name the key's position, never a key or a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.errors import Reason, Rejection

MAX_REMEMBERED = 4096  # safe spellings remembered per kind of object (then forgotten)


def fold(key: str) -> str:
    """`key` as a case-insensitive decoder compares it: NULs dropped, then Unicode
    case folding (`str.casefold` folds U+017F to `s` and U+212A to `k` as Go does,
    and more: it errs on the side of rejecting)."""
    return key.replace("\x00", "").casefold()


class KeyProblem(Rejection):
    """A key spelling problem at `where` (a path such as `commands[3].data`)."""

    def __init__(self, reason: Reason, where: str, problem: str) -> None:
        super().__init__(reason, f"{where or 'the body'}: {problem}")
        self.where = where
        self.problem = problem

    def within(self, prefix: str) -> KeyProblem:
        """The same problem seen from the object that holds this one at `prefix`."""
        where = f"{prefix}.{self.where}" if self.where else prefix
        return KeyProblem(self.reason, where, self.problem)


class Fields:
    """The field names a dialect interprets in one kind of object, and the key
    spellings already found safe there.

    `safe` holds at most one spelling per fold: the field names themselves, then
    the keys of objects that passed the full check. So an object whose keys are
    all in `safe` has no two keys that fold alike and no key that folds to a
    field name without being it: one C-level subset test (`safe.issuperset(obj)`)
    clears it, which is what every command of a batch costs. Only objects with a
    key not seen before take the full check (O(keys)). `safe` stays the same set
    object (it is only ever updated in place), so a hot path may hold it.
    """

    __slots__ = ("_spellings", "folds", "names", "safe")

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)
        self.folds: Mapping[str, str] = {fold(name): name for name in names}
        if len(self.folds) != len(names):
            raise ValueError(f"two of the fields {names} fold alike")
        self.safe: set[str] = set()
        self._spellings: dict[str, str] = {}  # fold → the one safe spelling
        self._forget()

    def check(self, obj: Mapping[str, Any], where: str) -> None:
        """Rejects (KeyProblem, malformed_payload): a key that folds to a field name
        without being it, two keys that fold alike."""
        if self.safe.issuperset(obj):
            return
        keys = list(obj)
        folded = [fold(key) for key in keys]
        for index, key in enumerate(keys):
            name = self.folds.get(folded[index])
            if name is not None and key != name:
                raise KeyProblem(Reason.MALFORMED_PAYLOAD, where, f'key {index} folds to "{name}"')
        if len(set(folded)) != len(folded):
            first, second = _alike(folded)
            problem = f"keys {first} and {second} fold alike"
            raise KeyProblem(Reason.MALFORMED_PAYLOAD, where, problem)
        self._remember(keys, folded)

    def check_names(self, obj: Mapping[str, Any], where: str, max_names: int) -> None:
        """`check` for an id or property container, which may hold at most `max_names`
        keys. Rejects (KeyProblem): payload_too_large, malformed_payload."""
        if len(obj) > max_names:
            problem = f"more than {max_names} names (server.limits.max_names_per_object)"
            raise KeyProblem(Reason.PAYLOAD_TOO_LARGE, where, problem)
        self.check(obj, where)

    def _remember(self, keys: list[str], folded: list[str]) -> None:
        if len(keys) > MAX_REMEMBERED // 4:
            return  # a huge object is checked in full each time; it would evict the rest
        if len(self._spellings) + len(keys) > MAX_REMEMBERED:
            self._forget()  # bounded: random names from a flood only cost the full check
        for key, key_fold in zip(keys, folded, strict=True):
            if self._spellings.setdefault(key_fold, key) == key:
                self.safe.add(key)

    def _forget(self) -> None:
        self._spellings = dict(self.folds)
        self.safe.clear()
        self.safe.update(self.names)


NAMES = Fields()  # an id or property container: every key is a name


def _alike(folded: list[str]) -> tuple[int, int]:
    """The positions of the first two keys with the same fold."""
    seen: dict[str, int] = {}
    for index, key_fold in enumerate(folded):
        if key_fold in seen:
            return seen[key_fold], index
        seen[key_fold] = index
    raise ValueError("no two keys fold alike")


def check_query(query: Mapping[str, str], parameter: str) -> None:
    """A query key that is `parameter` under case folding or with `[]` appended
    (nginx's `$arg_` ignores case, PHP and Node's `qs` read `a[]` as `a`) without
    being it. Rejects: stream_id_conflict."""
    for key in query:  # the usual query holds only `parameter`: nothing is folded
        if key != parameter and fold(key).removesuffix("[]") == fold(parameter):
            raise Rejection(
                Reason.STREAM_ID_CONFLICT,
                f"a query parameter is spelled like {parameter!r} without being it",
            )
