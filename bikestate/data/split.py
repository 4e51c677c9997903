"""Stratified train / val / test split of a DelftBikes annotation dict.

Each image is a multi-label example: how many of its boxes fall in each (part, state) pair. The
split is iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the stratification of
multi-label data", ECML PKDD 2011), weighted by box counts: the rarest (part, state) pairs are
placed first, each image going to the split that still most lacks that pair, so rare states
such as a damaged bell are spread by design rather than by luck. Because every (part, state)
pair is spread in proportion, each state's share of boxes is too.
"""
import math
from collections import Counter

import numpy as np

from ..constants import STATE_NAMES
from ..utils.errors import ConfigError, DataError
from .delftbikes import parse_part_state

__all__ = ["SPLIT_NAMES", "stratified_split", "state_shares", "split_labels",
           "iterative_stratification", "balance_by_swaps", "split_sizes"]

SPLIT_NAMES = ("train", "val", "test")
# Label for a box whose state cannot be read: such files still split (conversion reports them).
_UNKNOWN_STATE = "?"


def split_labels(annotations):
    """Per-image (part, state) box counts of a DelftBikes annotation dict.

    Returns:
        tuple: ``(file_names, labels, counts)``: file names sorted; ``labels`` a list of
        (part_name, state_name) pairs; ``counts`` an int64 array of shape (num_images,
        num_labels), boxes of each pair in each image.

    Raises:
        DataError: a record that is not an object with a 'parts' object or list.
    """
    _check_shape(annotations)
    file_names = sorted(annotations)
    per_image = []
    for name in file_names:
        parts = annotations[name]["parts"]
        items = parts.items() if isinstance(parts, dict) else ((None, p) for p in parts)
        c = Counter()
        for key, part in items:
            if not isinstance(part, dict):
                continue
            part_name = part.get("part_name", key)
            state, _ = parse_part_state(part)
            c[(str(part_name), STATE_NAMES[state] if state is not None else _UNKNOWN_STATE)] += 1
        per_image.append(c)
    labels = sorted(set().union(*per_image)) if per_image else []
    index = {label: j for j, label in enumerate(labels)}
    counts = np.zeros((len(file_names), len(labels)), dtype=np.int64)
    for i, c in enumerate(per_image):
        for label, n in c.items():
            counts[i, index[label]] = n
    return file_names, labels, counts


def stratified_split(annotations, val_fraction=0.1, test_fraction=0.1, seed=42):
    """Split a DelftBikes annotation dict into train, val and test, stratified on part states.

    Args:
        annotations (dict): DelftBikes format, file name -> record.
        val_fraction, test_fraction (float): shares of images in val and test, each in [0, 1)
            with a sum below 1; a zero fraction gives an empty split.
        seed (int): the same seed and input give the same split.

    Returns:
        dict: ``{"train": dict, "val": dict, "test": dict}``, each a DelftBikes annotation dict
        holding the input's records unchanged, in input order; every image is in exactly one.
    """
    fractions = _check_fractions(val_fraction, test_fraction)
    file_names, labels, counts = split_labels(annotations)
    assignment = iterative_stratification(counts, fractions, seed)
    # Box counts per state (columns), the quantity whose shares users compare across splits.
    states = sorted({state for _, state in labels})
    state_counts = np.zeros((len(file_names), len(states)), dtype=np.int64)
    for j, (_, state) in enumerate(labels):
        state_counts[:, states.index(state)] += counts[:, j]
    sizes = split_sizes(len(file_names), fractions)
    assignment = balance_by_swaps(assignment, state_counts, sizes, seed)
    chosen = dict(zip(file_names, assignment))
    splits = {name: {} for name in SPLIT_NAMES}
    for file_name, record in annotations.items():  # input order, records untouched
        splits[SPLIT_NAMES[chosen[file_name]]][file_name] = record
    return splits


def iterative_stratification(counts, fractions, seed):
    """Assign examples to folds so that every label's total is spread by ``fractions``.

    Args:
        counts (ndarray): shape (N, L), non-negative label counts per example.
        fractions (sequence of float): share of examples per fold, summing to 1.
        seed (int): breaks ties; the result depends on nothing else.

    Returns:
        ndarray: shape (N,), the fold index of each example.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, dtype=np.int64)
    num_examples, num_labels = counts.shape
    fractions = np.asarray(fractions, dtype=np.float64)
    # Folds with a zero share take nothing, however much they "lack".
    open_folds = fractions > 0
    wanted_examples = fractions * num_examples
    wanted_labels = fractions[:, None] * counts.sum(0)[None, :]  # (folds, labels)
    fold = np.full(num_examples, -1, dtype=np.int64)
    present = counts > 0

    def pick(scores):
        # Best score among open folds; ties go to the fold lacking most examples, then random.
        best = np.flatnonzero(open_folds & np.isclose(scores, scores[open_folds].max()))
        if len(best) > 1:
            need = wanted_examples[best]
            best = best[np.isclose(need, need.max())]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    def assign(i, f):
        fold[i] = f
        wanted_labels[f] -= counts[i]
        wanted_examples[f] -= 1

    unassigned = np.ones(num_examples, dtype=bool)
    while unassigned.any():
        remaining = present[unassigned].sum(0)  # examples left per label
        if not remaining.any():
            break
        # The label with fewest examples left is the hardest to spread: place it first.
        rarest = np.flatnonzero(remaining == remaining[remaining > 0].min())
        label = int(rarest[0] if len(rarest) == 1 else rng.choice(rarest))
        examples = np.flatnonzero(unassigned & present[:, label])
        for i in rng.permutation(examples):
            assign(i, pick(wanted_labels[:, label]))
        unassigned[examples] = False
    # Examples without any label only balance the fold sizes.
    for i in rng.permutation(np.flatnonzero(unassigned)):
        assign(i, pick(wanted_examples))
    return fold


def split_sizes(num_examples, fractions):
    """Images per split: val and test get ``fraction * N`` rounded half up, train the rest."""
    rest = [int(math.floor(f * num_examples + 0.5)) for f in fractions[1:]]
    return [num_examples - sum(rest)] + rest


def balance_by_swaps(fold, counts, sizes, seed, max_passes=6, candidates=512, tolerance=1e-7):
    """Give the folds their exact sizes, then swap examples to even out their label shares.

    Iterative stratification spreads each (part, state) pair, but it places every image on the
    strength of its rarest pair, so the per-state totals, summed over 22 parts, can still drift
    by a point or two when images differ a lot (a wreck with ten damaged parts next to a new
    bike), and its fold sizes are only approximate. This pass first moves images out of folds
    that are too large (each time the image whose move hurts the shares least), then swaps pairs
    of images between folds, which keeps the sizes, whenever the swap lowers the sum over folds
    of squared share deviations. Deterministic for a seed.

    Args:
        fold (ndarray): shape (N,), the fold of each example; not modified.
        counts (ndarray): shape (N, K), e.g. boxes per state in each image.
        sizes (sequence of int): wanted examples per fold, summing to N.
        seed (int): order of the candidates.
        max_passes (int): passes over all examples at most.
        candidates (int): swap partners tried per example (a random sample), which keeps a pass
            linear in N on large datasets.
        tolerance (float): stop once the total squared deviation is below this (1e-7: every
            share within about 0.03 points).

    Returns:
        ndarray: shape (N,), the new folds.
    """
    fold = fold.copy()
    num_folds = len(sizes)
    rng = np.random.default_rng(seed + 1)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0 or counts.sum() == 0:
        counts = np.zeros((len(fold), 1))
        target = np.zeros(1)
    else:
        target = counts.sum(0) / counts.sum()
    sums = np.stack([counts[fold == f].sum(0) for f in range(num_folds)])  # (folds, K)

    def cost(fold_sums):
        # fold_sums: (..., K) -> squared deviation of the shares from the target, (...)
        total = fold_sums.sum(-1, keepdims=True)
        shares = np.divide(fold_sums, total, out=np.zeros_like(fold_sums), where=total > 0)
        return np.where(total[..., 0] > 0, ((shares - target) ** 2).sum(-1), 0.0)

    # Exact sizes first: move the least harmful image from the fullest fold to the emptiest.
    have = np.bincount(fold, minlength=num_folds)
    while (have != sizes).any():
        a, b = int(np.argmax(have - sizes)), int(np.argmin(have - sizes))
        members = np.flatnonzero(fold == a)
        if len(members) > candidates:
            members = rng.choice(members, candidates, replace=False)
        new_a = sums[a] - counts[members]
        new_b = sums[b] + counts[members]
        i = members[int(np.argmin(cost(new_a) + cost(new_b)))]
        sums[a] -= counts[i]
        sums[b] += counts[i]
        fold[i] = b
        have[a] -= 1
        have[b] += 1

    for _ in range(max_passes):
        improved = False
        for i in rng.permutation(len(fold)):
            if cost(sums).sum() < tolerance:
                return fold
            a = fold[i]
            others = np.flatnonzero(fold != a)
            if len(others) == 0:
                break
            if len(others) > candidates:
                others = rng.choice(others, candidates, replace=False)
            b = fold[others]
            # New sums of fold a and of each candidate's fold b if i and the candidate swap.
            new_a = sums[a] - counts[i] + counts[others]  # (M, K)
            new_b = sums[b] - counts[others] + counts[i]  # (M, K)
            delta = (cost(new_a) + cost(new_b)) - (cost(sums[a]) + cost(sums[b]))
            best = int(np.argmin(delta))
            if delta[best] < -1e-12:
                j = others[best]
                sums[a], sums[fold[j]] = new_a[best], new_b[best]
                fold[i], fold[j] = fold[j], a
                improved = True
        if not improved:
            break
    return fold


def state_shares(annotations):
    """Boxes per state of a DelftBikes annotation dict: ``(total_boxes, {state: share})``.

    Shares are fractions of all boxes (0..1); a state that cannot be read counts under "?".
    """
    _, labels, counts = split_labels(annotations)
    per_state = Counter()
    for (_, state), n in zip(labels, counts.sum(0) if len(counts) else []):
        per_state[state] += int(n)
    total = sum(per_state.values())
    names = list(STATE_NAMES) + ([_UNKNOWN_STATE] if per_state[_UNKNOWN_STATE] else [])
    return total, {s: (per_state[s] / total if total else 0.0) for s in names}


def _check_fractions(val_fraction, test_fraction):
    for name, v in (("val fraction", val_fraction), ("test fraction", test_fraction)):
        if not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {v!r}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"val fraction {val_fraction} + test fraction {test_fraction} leave "
                          "no images for training")
    return (1.0 - val_fraction - test_fraction, float(val_fraction), float(test_fraction))


def _check_shape(annotations):
    if not isinstance(annotations, dict):
        raise DataError("annotations must be a JSON object keyed by image file name")
    bad = []
    for name, record in annotations.items():
        if not isinstance(record, dict) or not isinstance(record.get("parts"), (dict, list)):
            bad.append(f"{name}: record is not an object with a 'parts' object")
    if bad:
        raise DataError(f"{len(bad)} malformed image records", details=bad)
