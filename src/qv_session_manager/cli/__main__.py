"""``python -m qv_session_manager.cli``: the same as the ``qv-sessions`` command."""

from . import main

main(prog_name="qv-sessions")
