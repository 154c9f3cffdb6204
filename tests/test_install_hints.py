"""Install hints in errors name what pip finds anywhere: the package, and the extra only for a checkout."""

from __future__ import annotations

import pytest

from qv_session_manager import InvalidInputError, encryption
from qv_session_manager.install_hints import install_hint


def test_the_hint_names_the_package_and_the_checkout_extra() -> None:
    assert install_hint("cryptography", "encryption") == (
        'pip install cryptography (from a checkout of qv-session-manager: pip install -e ".[encryption]")'
    )


def test_encrypted_store_without_cryptography_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encryption, "AESGCM", None)
    with pytest.raises(InvalidInputError) as caught:
        encryption.EncryptedStore(None, {"k": bytes(32)}, current="k")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "pip install cryptography" in message and 'pip install -e ".[encryption]"' in message
    assert "qv-session-manager[encryption]" not in message  # PyPI's 0.3.0 has no such extra


def test_the_testing_kit_names_the_install_that_works_from_a_checkout() -> None:
    from pathlib import Path

    import qv_session_manager.testing as kit

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for text in (readme, kit.__doc__ or ""):
        assert 'pip install -e ".[testing]"' in text
        assert "pip install qv-session-manager[testing]" not in text  # PyPI's 0.3.0 has no such extra
