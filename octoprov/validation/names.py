"""Names people give things: script files, parameters, and display names.

Script names become file names on the target, and parameter names become PowerShell
parameters or exported shell variables, so both are kept to a character set that needs no
quoting anywhere, and a parameter must not be a variable either shell already gives a meaning to.
"""

from __future__ import annotations

import re
import unicodedata

_SCRIPT_NAME = re.compile(r"[A-Za-z0-9._-]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_script_name(name: str) -> str:
    """A file name in a script library folder, e.g. ``Configure-Firewall.ps1``."""
    if "/" in name or "\\" in name:
        raise ValueError("must be a file name, not a path")
    if not 1 <= len(name) <= 100:
        raise ValueError("must be 1 to 100 characters")
    if not _SCRIPT_NAME.fullmatch(name):
        raise ValueError("may contain only letters, digits, dots, hyphens and underscores")
    if name.startswith("."):
        raise ValueError("must not start with a dot")
    return name


def check_parameter_name(name: str) -> str:
    """A script or package parameter name, e.g. ``instanceName``."""
    if not 1 <= len(name) <= 64:
        raise ValueError("must be 1 to 64 characters")
    if not _PARAMETER_NAME.fullmatch(name):
        raise ValueError("must start with a letter or underscore and contain only letters, digits and underscores")
    return name


# PowerShell's automatic variables and common parameters (names are case-insensitive there), and
# the variables sh and the dynamic linker act on (case-sensitive): a parameter called $input or
# PATH would change how the script runs rather than what it is told. The linker's are those glibc
# itself drops for set-user-ID programs (UNSECURE_ENVVARS, sysdeps/generic/unsecvars.h).
_POWERSHELL_RESERVED = frozenset({
    "_", "args", "confirm", "consolefilename", "debug", "enabledexperimentalfeatures", "error", "erroraction",
    "errorvariable", "event", "eventargs", "eventsubscriber", "executioncontext", "false", "foreach", "home",
    "host", "informationaction", "informationvariable", "input", "iscoreclr", "islinux", "ismacos", "iswindows",
    "lastexitcode", "matches", "myinvocation", "nestedpromptlevel", "null", "outbuffer", "outvariable", "pid",
    "pipelinevariable", "profile", "progressaction", "psboundparameters", "pscmdlet", "pscommandpath", "psculture",
    "psdebugcontext", "psedition", "pshome", "psitem", "psscriptroot", "pssenderinfo", "psuiculture",
    "psversiontable", "pwd", "sender", "shellid", "stacktrace", "switch", "this", "true", "verbose",
    "warningaction", "warningvariable", "whatif"
})
_SHELL_RESERVED = frozenset({
    "BASHOPTS", "CDPATH", "ENV", "HOME", "IFS", "LANG", "LANGUAGE", "LINENO", "LOGNAME", "OLDPWD", "OPTARG",
    "OPTIND", "PATH", "PPID", "PS1", "PS2", "PS4", "PWD", "SHELL", "SHELLOPTS", "TERM", "TMPDIR", "USER",
    # glibc's UNSECURE_ENVVARS besides LD_* and MALLOC_*
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "NIS_PATH", "NLSPATH",
    "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR",
})
_SHELL_RESERVED_PREFIXES = ("LD_", "BASH_", "LC_", "MALLOC_")


def check_unreserved_variable(name: str) -> str:
    """A parameter name that shadows nothing PowerShell, sh or the dynamic linker act on (``LD_PRELOAD``,
    ``PATH``, ``$input``); the same rule for package parameters and library scripts' parameters."""
    if name.lower() in _POWERSHELL_RESERVED:
        raise ValueError("is a PowerShell automatic variable or common parameter; choose another name")
    if name in _SHELL_RESERVED or name.startswith(_SHELL_RESERVED_PREFIXES):
        raise ValueError("is a variable the shell or the dynamic linker acts on; choose another name")
    return name


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def check_display_name(name: str, max_len: int = 255) -> str:
    """A single line of free text (a template name, a vSwitch); returned stripped."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("must not be empty")
    if len(stripped) > max_len:
        raise ValueError(f"must be at most {max_len} characters")
    if has_control_characters(stripped):
        raise ValueError("must not contain control characters")
    return stripped
