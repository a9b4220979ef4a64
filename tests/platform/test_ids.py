"""Ids are a prefix and 12 random characters of [0-9a-z], each character uniform: ids are
unguessable and never collide in practice."""

from __future__ import annotations

import re
from collections import Counter

from openpitrix import ids


def test_ids_are_the_prefix_and_twelve_lowercase_alphanumerics() -> None:
    made = [ids.new_id(ids.APP_VERSION) for _ in range(2000)]
    assert all(re.fullmatch(r"appv-[0-9a-z]{12}", made_id) for made_id in made)
    assert len(set(made)) == len(made)
    assert re.fullmatch(r"j-[0-9a-z]{5}", ids.new_id(ids.JOB, length=5))


def test_every_character_of_the_alphabet_is_about_equally_likely() -> None:
    counts = Counter("".join(ids.new_id("x")[2:] for _ in range(10_000)))
    # 120,000 characters over 36: 3,333 each, standard deviation ~57; 15% is ~9 deviations.
    assert sorted(counts) == sorted("0123456789abcdefghijklmnopqrstuvwxyz")
    assert all(abs(n - 120_000 / 36) < 0.15 * 120_000 / 36 for n in counts.values())
