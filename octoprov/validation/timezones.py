"""Time zones: unattend.xml takes Windows time-zone IDs, Linux targets need the IANA name.

CLDR's Windows→IANA table (shipped with tzlocal) lists the IDs Windows knows.
"""

from __future__ import annotations

from tzlocal.windows_tz import win_tz

from octoprov.validation._vocabulary import Vocabulary

_IANA = {"UTC": "Etc/UTC", **win_tz}
WINDOWS_TIMEZONES = frozenset(_IANA)

_TIMEZONES = Vocabulary(WINDOWS_TIMEZONES, "Windows time zone ID")


def check_timezone(tz_id: str) -> str:
    """Return the canonical spelling of the Windows time-zone ID ``tz_id``."""
    return _TIMEZONES.lookup(tz_id)


def iana_timezone(tz_id: str) -> str:
    """Return the IANA name (``Europe/Berlin``) for the Windows ID ``tz_id``."""
    return _IANA[check_timezone(tz_id)]
