"""The conformance clauses of word counts (:class:`~qv_session_manager.protocol.TokenCounting`).

:class:`~qv_session_manager.testing.StoreContract` includes them; each skips for a
store that does not declare ``Capability.TOKEN_COUNTING``.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import InvalidInputError
from ..protocol import Capability, ConversationStore, TokenCounting, offers
from ..text import tokens
from .openers import StoreOpener
from .samples import conversation, message

_WORDS = ["the", "car", "battery", "cake", "start"]


def _counting(store: ConversationStore) -> TokenCounting:
    if not offers(store, Capability.TOKEN_COUNTING):
        pytest.skip("the backend does not declare Capability.TOKEN_COUNTING (common_tokens)")
    return store


class TokenCountingClauses:
    """The word-count clauses; mixed into StoreContract."""

    def test_common_tokens_are_those_most_messages_hold(self, store_opener: StoreOpener) -> None:
        """contract words: on random messages, the common tokens are exactly those held by more than the bound."""
        counter = itertools.count()
        text = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join)
        chats = st.lists(st.lists(text, min_size=1, max_size=3), min_size=1, max_size=8)

        @given(chats, st.floats(0, 1), st.integers(0, 6))
        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def check(contents, share, minimum) -> None:  # type: ignore[no-untyped-def]
            store = store_opener(f"token-counts{next(counter)}")
            try:
                counting = _counting(store)
                for number, texts in enumerate(contents):
                    store.save(conversation(f"c{number}"), [message(t, id=f"m{i}") for i, t in enumerate(texts)])
                stored = [t for texts in contents for t in texts]
                bound = max(minimum, int(share * len(stored)))
                expected = {word for word in _WORDS if sum(word in tokens(t) for t in stored) > bound}
                got = counting.common_tokens([*_WORDS, "absent", ""], share=share, minimum=minimum)
                assert got == expected, f"contract words: common_tokens differs with bound {bound}"
            finally:
                store.close()

        check()

    def test_common_tokens_refuses_bad_arguments(self, store: ConversationStore) -> None:
        """contract words: tokens that are a str or hold a non-str, a share outside 0..1, a minimum that is
        not a count: each an InvalidInputError."""
        counting = _counting(store)
        store.save(conversation("c"), [message("the car")])
        for bad in ("car", b"car", ["car", 3], None):
            with pytest.raises(InvalidInputError):
                counting.common_tokens(bad, share=0.1, minimum=0)  # type: ignore[arg-type]
        for share in (-0.1, 1.5, "half", True, float("nan")):
            with pytest.raises(InvalidInputError):
                counting.common_tokens(["car"], share=share, minimum=0)  # type: ignore[arg-type]
        for minimum in (-1, 1.5, None, True):
            with pytest.raises(InvalidInputError):
                counting.common_tokens(["car"], share=0.1, minimum=minimum)  # type: ignore[arg-type]
        assert counting.common_tokens(["car"], share=0.0, minimum=0) == {"car"}
