"""Install hints in error messages that are true wherever the user is.

The extras (``[encryption]``, ``[sqlcipher]``, ``[async]``, ``[cli]``) exist in this
repository's pyproject.toml but not in every release on PyPI (0.3.0 has none of
them), so ``pip install "qv-session-manager[encryption]"`` may install a release
without the feature. A hint therefore names the package that is missing, which pip
always finds, and the extra for a checkout of this repository.
"""

from __future__ import annotations


def install_hint(package: str, extra: str) -> str:
    """``pip install PACKAGE (from a checkout of qv-session-manager: pip install -e ".[EXTRA]")``."""
    return f'pip install {package} (from a checkout of qv-session-manager: pip install -e ".[{extra}]")'
