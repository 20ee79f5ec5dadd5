"""Windows language tags: Setup fails late, and opaquely, when asked for a language it has no pack for."""

from __future__ import annotations

from octoprov.validation._vocabulary import Vocabulary

# fmt: off
WINDOWS_LANGUAGES = frozenset({
    "ar-SA", "bg-BG", "cs-CZ", "da-DK", "de-DE", "el-GR", "en-GB", "en-US", "es-ES", "es-MX",
    "et-EE", "fi-FI", "fr-CA", "fr-FR", "he-IL", "hr-HR", "hu-HU", "it-IT", "ja-JP", "ko-KR",
    "lt-LT", "lv-LV", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sk-SK",
    "sl-SI", "sr-Latn-RS", "sv-SE", "th-TH", "tr-TR", "uk-UA", "zh-CN", "zh-TW",
})
# fmt: on

_LANGUAGES = Vocabulary(WINDOWS_LANGUAGES, "Windows language tag")


def check_language(tag: str) -> str:
    """Return the canonical spelling of ``tag`` (``DE-de`` → ``de-DE``)."""
    return _LANGUAGES.lookup(tag)
