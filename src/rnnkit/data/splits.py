"""Stratified train/validation splits and k-fold cross-validation over labels."""
from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

from rnnkit.errors import ConfigError


def _by_class(labels: Sequence[Hashable], rng: random.Random) -> list[list[int]]:
    """Indices of each class, classes in sorted order, each shuffled by ``rng``."""
    groups: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        if label is None:
            raise ConfigError(f"example {i} has no label; stratified splits need a label on every example")
        groups.setdefault(label, []).append(i)
    out = []
    for label in sorted(groups, key=str):
        idx = groups[label]
        rng.shuffle(idx)
        out.append(idx)
    return out


def stratified_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(labels)-1`` into ``(train, valid)`` keeping each class's share.

    ``round(len(labels) * fraction)`` examples go to validation, shared among
    classes in proportion to their size (largest remainder), with at least one
    example of every class left in train (a class of one stays in train).  The
    same labels and seed give the same split.  Both lists are sorted.
    ``ConfigError`` if ``fraction`` is not in (0, 1) or leaves a part empty.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be a number in (0, 1), got {fraction!r}")
    groups = _by_class(labels, random.Random(seed))
    n = len(labels)
    target = round(n * fraction)
    # largest-remainder apportionment of `target` among classes, capped at size - 1
    quotas = [len(g) * fraction for g in groups]
    caps = [len(g) - 1 for g in groups]
    take = [min(int(q), c) for q, c in zip(quotas, caps)]
    order = sorted(range(len(groups)), key=lambda c: (-(quotas[c] - int(quotas[c])), c))
    short = target - sum(take)  # >= 0: a sum of floors is at most the floor of the sum
    while short > 0:  # one more each by largest remainder; repeats only if caps bit
        room = [c for c in order if take[c] < caps[c]][:short]
        if not room:
            break
        for c in room:
            take[c] += 1
        short -= len(room)
    valid = sorted(i for g, t in zip(groups, take) for i in g[:t])
    train = sorted(i for g, t in zip(groups, take) for i in g[t:])
    if not valid:
        raise ConfigError(f"a fraction of {fraction} of {n} examples leaves no validation examples")
    if not train:
        raise ConfigError(f"a fraction of {fraction} of {n} examples leaves no training examples")
    return train, valid


def stratified_kfold(labels: Sequence[str], k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """``k`` folds ``(train, test)``: every index is in exactly one test fold.

    Each class is shuffled (``random.Random(seed)``) and dealt round-robin over
    the folds, each class starting where the previous one stopped, so every
    class's count differs by at most one between folds, and so do fold sizes.
    Index lists are sorted.  ``ConfigError`` if ``k < 2`` or ``k`` exceeds the
    number of examples.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"k-fold cross-validation needs an integer k >= 2, got {k!r}")
    if k > len(labels):
        raise ConfigError(f"cannot make {k} folds from {len(labels)} examples")
    groups = _by_class(labels, random.Random(seed))
    tests: list[list[int]] = [[] for _ in range(k)]
    fold = 0
    for g in groups:
        for i in g:
            tests[fold].append(i)
            fold = (fold + 1) % k
    out = []
    for f in range(k):
        test = sorted(tests[f])
        in_test = set(test)
        out.append(([i for i in range(len(labels)) if i not in in_test], test))
    return out
