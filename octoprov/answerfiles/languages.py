"""What each supported language tag means to the installers.

Windows takes the keyboard as an input profile (``language-id:keyboard-layout-id``, or an IME's
GUIDs), the defaults Microsoft lists under "Default input profiles"; a tag alone is not enough
for languages with several layouts. The built-in Administrator account is named in the
image's own language, and auto-logon (which ``FirstLogonCommands`` need) fails with the wrong
name. Linux installers take an X keyboard layout and a glibc locale instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from octoprov.validation import WINDOWS_LANGUAGES, check_language

_JA_IME = "{03B5835F-F03C-411B-9CE2-AA23E1171E36}{A76C93D9-5523-4E90-AAFA-4DB112F9AC76}"
_KO_IME = "{A028AE76-01B1-46C2-99C4-ACD9858AE02F}{B5FE1F02-D5F2-4445-9C03-C568F23C99A1}"
_ZH_CN_IME = "{81D4E9C9-1D3B-41BC-9E6C-4B40BF79E35E}{FA550B04-5AD7-411F-A5AC-CA038EC515D7}"
_ZH_TW_IME = "{B115690A-EA02-48D5-A231-E3578D2FDF80}{B2F9C502-1742-11D4-9790-0080C882687E}"
_SCRIPT_MODIFIERS = {"Latn": "latin"}


@dataclass(frozen=True)
class Language:
    tag: str
    input_locale: str  # Windows InputLocale
    xkb_layout: str  # Kickstart keyboard --xlayouts
    administrator: str = "Administrator"  # the built-in account's name in an image of this language

    @property
    def glibc_locale(self) -> str:
        """``de-DE`` → ``de_DE.UTF-8``; ``sr-Latn-RS`` → ``sr_RS.UTF-8@latin``."""
        parts = self.tag.split("-")
        if len(parts) == 3:  # language-Script-REGION; glibc names the script as a modifier
            return f"{parts[0]}_{parts[2]}.UTF-8@{_SCRIPT_MODIFIERS[parts[1]]}"
        return f"{parts[0]}_{parts[1]}.UTF-8"


# fmt: off
LANGUAGES = {language.tag: language for language in (
    Language("ar-SA", "0401:00000401", "ara"),
    Language("bg-BG", "0402:00030402", "bg"),
    Language("cs-CZ", "0405:00000405", "cz"),
    Language("da-DK", "0406:00000406", "dk"),
    Language("de-DE", "0407:00000407", "de"),
    Language("el-GR", "0408:00000408", "gr"),
    Language("en-GB", "0809:00000809", "gb"),
    Language("en-US", "0409:00000409", "us"),
    Language("es-ES", "0c0a:0000040a", "es", "Administrador"),
    Language("es-MX", "080a:0000080a", "latam", "Administrador"),
    Language("et-EE", "0425:00000425", "ee"),
    Language("fi-FI", "040b:0000040b", "fi", "Järjestelmänvalvoja"),
    Language("fr-CA", "0c0c:00001009", "ca", "Administrateur"),
    Language("fr-FR", "040c:0000040c", "fr", "Administrateur"),
    Language("he-IL", "040d:0002040d", "il"),
    Language("hr-HR", "041a:0000041a", "hr"),
    Language("hu-HU", "040e:0000040e", "hu", "Rendszergazda"),
    Language("it-IT", "0410:00000410", "it"),
    Language("ja-JP", f"0411:{_JA_IME}", "jp"),
    Language("ko-KR", f"0412:{_KO_IME}", "kr"),
    Language("lt-LT", "0427:00010427", "lt"),
    Language("lv-LV", "0426:00020426", "lv"),
    Language("nb-NO", "0414:00000414", "no"),
    Language("nl-NL", "0413:00020409", "us"),
    Language("pl-PL", "0415:00000415", "pl"),
    Language("pt-BR", "0416:00000416", "br", "Administrador"),
    Language("pt-PT", "0816:00000816", "pt", "Administrador"),
    Language("ro-RO", "0418:00010418", "ro"),
    Language("ru-RU", "0419:00000419", "ru", "Администратор"),
    Language("sk-SK", "041b:0000041b", "sk"),
    Language("sl-SI", "0424:00000424", "si"),
    Language("sr-Latn-RS", "241a:0000081a", "rs (latin)"),
    Language("sv-SE", "041d:0000041d", "se", "Administratör"),
    Language("th-TH", "041e:0000041e", "th"),
    Language("tr-TR", "041f:0000041f", "tr"),
    Language("uk-UA", "0422:00020422", "ua"),
    Language("zh-CN", f"0804:{_ZH_CN_IME}", "cn"),
    Language("zh-TW", f"0404:{_ZH_TW_IME}", "tw"),
)}
# fmt: on

assert set(LANGUAGES) == WINDOWS_LANGUAGES, "every language a request may name needs its row here"


def language(tag: str) -> Language:
    """The row of a tag in any spelling (``DE-de``); ValueError for an unknown tag."""
    return LANGUAGES[check_language(tag)]
