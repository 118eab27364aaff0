"""Run untrusted Python code in a separate, locked-down process (bubblewrap namespaces, rlimits, seccomp).

``run_code(code, timeout_s=..., memory_mb=..., max_output_bytes=..., stdin=...) -> SandboxResult`` is the whole API
most callers need (the python tool, HumanEval); :class:`Sandbox` holds the full set of limits.
"""

from core.sandbox.bubblewrap import Sandbox, SandboxResult, SandboxUnavailableError, run_code

__all__ = ["Sandbox", "SandboxResult", "SandboxUnavailableError", "run_code"]
