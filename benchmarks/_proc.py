"""This process's memory as Linux reports it, for the benchmarks that measure a phase's own peak:
`status_kib` reads /proc/self/status (VmRSS: now, VmHWM: the peak), `reset_peak` sets the peak back
to the current RSS (/proc/self/clear_refs, Linux >= 4.0), so a phase's peak is its own."""

from __future__ import annotations

from pathlib import Path

__all__ = ["reset_peak", "status_kib"]


def status_kib(field: str) -> int | None:
    """The /proc/self/status figure ``field`` (VmRSS, VmHWM) in KiB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
