"""The ``current_datetime`` tool: what time it is, in any IANA time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from core.tools.base import Tool, ToolError, tool
from llm_backend.errors import did_you_mean


@tool
def current_datetime(timezone: str = "UTC") -> str:
    """Get the current date and time.

    Args:
        timezone: an IANA time zone name such as "UTC", "Europe/Berlin" or "Asia/Shanghai".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {timezone!r}. {did_you_mean(timezone, available_timezones())}") from exc
    now = datetime.now(zone)
    return f"{now.isoformat(timespec='seconds')} ({now.strftime('%A')}, {timezone})"


CURRENT_DATETIME: Tool = current_datetime
