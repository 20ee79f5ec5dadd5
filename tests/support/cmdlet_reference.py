"""A PowerShell command checked against Microsoft's documented parameter sets, as PowerShell's
parameter binder would check it, without a Windows host.

The reference is ``tests/data/windows-reference/powershell-cmdlets.json`` (extracted from the
Hyper-V, ActiveDirectory, Storage and core cmdlet pages; see its README). A call is a command name,
its named parameters with their Python values (what pypsrp sends as typed CLIXML), positional
arguments and what the pipeline hands it. It binds when at least one documented parameter set takes
it, as PowerShell resolves sets:

* every named parameter exists in the set, by name or alias, case-insensitively (no prefixes:
  PowerShell accepts an unambiguous prefix, but a later module version adding a parameter makes it
  ambiguous, so Octoprov spells names out). The common parameters (``-ErrorAction``, ``-Verbose``, ...)
  exist in every set the page says takes ``[<CommonParameters>]``; ``-WhatIf``/``-Confirm`` only where
  the set lists them. A parameter given twice (by name and by alias) is refused;
* positional arguments go to the set's positional parameters in order;
* pipeline input binds ByValue to a parameter whose type the input is (the previous command's
  documented OUTPUTS type; an unknown input binds anywhere), else ByPropertyName where the input
  names its properties;
* every mandatory parameter of the set is bound, and not with an empty string, an empty array or
  null (PowerShell's default for mandatory parameters; a script relaxes it with ``[AllowEmptyString()]``,
  ``[AllowEmptyCollection()]``, ``[AllowNull()]``);
* each value converts to the documented .NET type (the table below);
* more than one set left: the default set wins, else the call is ambiguous, as PowerShell says.

Conversion table (Python value -> documented .NET type). Stricter than PowerShell where PowerShell
would convert text: Octoprov's values carry their own type on the wire, so a number sent as a string
is a misreading even though the host would parse it (``"16GB"`` and ``"0x10"`` parse too):

==================================  =====================================================================
.NET type                           accepted Python value
==================================  =====================================================================
String, Uri                         str
Char                                str of one character
Byte, SByte, (U)Int16/32/64         int (not bool) inside the type's range; Int64/UInt64 for byte sizes
Single, Double, Decimal             int or float (not bool)
Boolean                             bool (PowerShell would also take 0/1; Octoprov sends bool)
SwitchParameter                     bool: True sets it; False is ``-Switch:$false`` (``-Confirm:$false``)
an enum (accepted_values, or        str, one of the values, case-insensitive as PowerShell parses
OnOffState, ActionPreference, ...)  enums: ``OnOffState`` is ``'On'``/``'Off'`` only, never a bool
numeric with accepted_values        int whose text is one of them (``New-VM -Generation`` 1 or 2)
X[]                                 one X (PowerShell wraps it) or a list/tuple of X; Byte[] is bytes
Guid                                uuid.UUID or its text
DateTime                            datetime.datetime
Version                             str "major.minor[.build[.revision]]"
Hashtable, IDictionary              dict
Object, PSObject                    anything
ADComputer, ADPrincipal, ... (AD    str: PowerShell converts through the identity's string constructor
identities)                         (distinguished name, GUID, SID or sAMAccountName)
ScriptBlock                         never: Octoprov binds values, not code (and PowerShell would not
                                    turn a string into a script block either)
anything else (VirtualMachine,      nothing a Python value converts to: such objects come from the
VMComponentObject, CimInstance,     pipeline or live inside a fixed script
PSCredential, ...)
==================================  =====================================================================

One rule beyond the binder: a value with wildcard characters (``* ? [ ]`` and the escape character
`````) bound to a parameter the page marks as accepting wildcards is refused: it would be matched as a
pattern, not taken literally (a name with ``[`` would not even find itself).

Fixed scripts are commands too: their ``param()`` block is one parameter set (``script_command``),
so what Octoprov binds to a script is checked the same way. Inside a script, the cmdlet invocations
are found by a small tokenizer (``script_invocations``) and checked as well: the script's parameters
carry the values bound to them (or samples of their declared type), other expressions count as
values of any type.

Cmdlets Octoprov calls that the extraction does not cover are in ``SUPPLEMENT``, transcribed from
the same PowerShell-Docs pages; any other cmdlet is unknown and refused.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "windows-reference" / "powershell-cmdlets.json"
WILDCARDS = re.compile(r"[*?\[\]`]")  # WildcardPattern's special characters, its escape character included

# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    mandatory: bool = False
    position: int | None = None
    by_value: bool = False
    by_property_name: bool = False
    aliases: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()
    wildcards: bool = False
    allow_empty_string: bool = False
    allow_empty_collection: bool = False
    allow_null: bool = False
    minimum: int | None = None  # a script's [ValidateRange()]
    maximum: int | None = None
    default: Any = None  # a script's "= value", when it is a literal


@dataclass(frozen=True)
class ParameterSet:
    name: str
    parameters: tuple[Parameter, ...]
    default: bool = False
    common: bool = True  # the set takes [<CommonParameters>]

    @functools.cached_property
    def by_key(self) -> dict[str, Parameter]:
        """Each parameter under its lower-case name and aliases, the common ones included."""
        return {alias.lower(): parameter for parameter in (*self.parameters, *(COMMON if self.common else ()))
                for alias in (parameter.name, *parameter.aliases)}


@dataclass(frozen=True)
class Command:
    """A cmdlet of the reference, or a script by its ``param()`` block."""

    name: str
    sets: tuple[ParameterSet, ...]
    outputs: tuple[str, ...] = ()
    source: str = ""
    script: bool = False
    advanced: bool = True  # a script without [CmdletBinding()]/[Parameter()] puts unknown names into $args

    def parameter(self, name: str) -> Parameter | None:
        """The parameter ``name`` (or alias) in any set."""
        for parameter_set in self.sets:
            found = parameter_set.by_key.get(name.lower())
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class PipelineInput:
    """What the previous command writes: its OUTPUTS type names; none known binds anywhere."""

    types: tuple[str, ...] = ()
    properties: frozenset[str] = frozenset()


ANY_INPUT = PipelineInput()


@dataclass(frozen=True)
class Binding:
    """A call as PowerShell would bind it: the set chosen and each parameter under its own name."""

    command: str
    parameter_set: str
    bound: dict[str, Any]
    from_pipeline: str | None = None


class BindingError(Exception):
    """What the host's binder would throw. ``error_id`` is the first part of PowerShell's
    FullyQualifiedErrorId (NamedParameterNotFound, MissingMandatoryParameter, ...), ``category`` its
    ErrorCategory, ``exception`` the .NET exception's name."""

    def __init__(self, command: str, error_id: str, message: str, *, category: str = "InvalidArgument",
                 exception: str = "ParameterBindingException") -> None:
        super().__init__(f"{command}: {message}")
        self.command, self.error_id, self.message = command, error_id, message
        self.category, self.exception = category, exception


class Unknown:
    """A value the checker cannot see (an expression inside a script): converts to anything."""

    def __repr__(self) -> str:
        return "<unknown>"


class ScriptBlockLiteral:
    """``{ ... }`` written as an argument inside a script."""

    def __repr__(self) -> str:
        return "<script block>"


UNKNOWN = Unknown()
SCRIPT_BLOCK = ScriptBlockLiteral()

_PREFERENCE = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")  # Windows PowerShell 5.1
COMMON = tuple(Parameter(name, kind, aliases=(alias,), accepted=_PREFERENCE if kind == "ActionPreference" else ())
               for name, kind, alias in (
                   ("Verbose", "SwitchParameter", "vb"), ("Debug", "SwitchParameter", "db"),
                   ("ErrorAction", "ActionPreference", "ea"), ("WarningAction", "ActionPreference", "wa"),
                   ("InformationAction", "ActionPreference", "infa"), ("ErrorVariable", "String", "ev"),
                   ("WarningVariable", "String", "wv"), ("InformationVariable", "String", "iv"),
                   ("OutVariable", "String", "ov"), ("OutBuffer", "Int32", "ob"),
                   ("PipelineVariable", "String", "pv")))

# --- cmdlets the extraction leaves out, transcribed from the same docs ------------------------------

_PS_DOCS = "MicrosoftDocs/PowerShell-Docs reference/5.1/Microsoft.PowerShell.Utility/"
SUPPLEMENT: dict[str, dict[str, Any]] = {
    # Octoprov reads Get-FileHash's Hash through it (commands.file_hash); commit 03c7672e
    "Select-Object": {"source": _PS_DOCS + "Select-Object.md", "outputs": ["System.Management.Automation.PSObject"],
                      "parameter_sets": [
                          {"name": "DefaultParameter", "is_default": True, "common_parameters": True, "parameters": [
                              {"name": "InputObject", "type": "PSObject", "pipeline_input_modes": ["ByValue"]},
                              {"name": "Property", "type": "Object[]", "position": 0},
                              {"name": "ExcludeProperty", "type": "String[]"},
                              {"name": "ExpandProperty", "type": "String"},
                              {"name": "Unique", "type": "SwitchParameter"},
                              {"name": "Last", "type": "Int32"}, {"name": "First", "type": "Int32"},
                              {"name": "Skip", "type": "Int32"}, {"name": "Wait", "type": "SwitchParameter"}]},
                          {"name": "SkipLastParameter", "common_parameters": True, "parameters": [
                              {"name": "InputObject", "type": "PSObject", "pipeline_input_modes": ["ByValue"]},
                              {"name": "Property", "type": "Object[]", "position": 0},
                              {"name": "ExcludeProperty", "type": "String[]"},
                              {"name": "ExpandProperty", "type": "String"},
                              {"name": "Unique", "type": "SwitchParameter"}, {"name": "SkipLast", "type": "Int32"}]},
                          {"name": "IndexParameter", "common_parameters": True, "parameters": [
                              {"name": "InputObject", "type": "PSObject", "pipeline_input_modes": ["ByValue"]},
                              {"name": "Unique", "type": "SwitchParameter"},
                              {"name": "Wait", "type": "SwitchParameter"}, {"name": "Index", "type": "Int32[]"}]}]},
    # post-install formats a script's output with it (octoprov/postinstall/windows.py); commit 01b93df7
    "Out-String": {"source": _PS_DOCS + "Out-String.md", "outputs": ["System.String"], "parameter_sets": [
        {"name": "__AllParameterSets", "is_default": True, "common_parameters": True, "parameters": [
            {"name": "Stream", "type": "SwitchParameter"}, {"name": "Width", "type": "Int32"},
            {"name": "InputObject", "type": "PSObject", "pipeline_input_modes": ["ByValue"]}]}]},
    # post-install reads $LASTEXITCODE with it; commit 01b93df7
    "Get-Variable": {"source": _PS_DOCS + "Get-Variable.md", "outputs": ["System.Management.Automation.PSVariable"],
                     "parameter_sets": [
                         {"name": "__AllParameterSets", "is_default": True, "common_parameters": True, "parameters": [
                             {"name": "Name", "type": "String[]", "position": 0,
                              "pipeline_input_modes": ["ByPropertyName", "ByValue"]},
                             {"name": "ValueOnly", "type": "SwitchParameter"},
                             {"name": "Include", "type": "String[]"}, {"name": "Exclude", "type": "String[]"},
                             {"name": "Scope", "type": "String"}]}]},
    # Invoke-OctoprovDjoin.ps1 builds its paths with it; reference/5.1/Microsoft.PowerShell.Management/, commit 0267c678
    "Join-Path": {"source": "MicrosoftDocs/PowerShell-Docs reference/5.1/Microsoft.PowerShell.Management/Join-Path.md",
                  "outputs": ["System.String"], "parameter_sets": [
                      {"name": "__AllParameterSets", "is_default": True, "common_parameters": True, "parameters": [
                          {"name": "Path", "type": "String[]", "mandatory": True, "position": 0, "aliases": ["PSPath"],
                           "pipeline_input_modes": ["ByPropertyName", "ByValue"], "wildcards": True},
                          {"name": "ChildPath", "type": "String", "mandatory": True, "position": 1,
                           "pipeline_input_modes": ["ByPropertyName"], "wildcards": True},
                          {"name": "Resolve", "type": "SwitchParameter"},
                          {"name": "Credential", "type": "PSCredential", "pipeline_input_modes": ["ByPropertyName"]},
                          {"name": "UseTransaction", "type": "SwitchParameter", "aliases": ["usetx"]}]}]},
    # Send-OctoprovEnterKey.ps1 finds the VM's keyboard with it; reference/5.1/CimCmdlets/, commit 0a9c0457
    "Get-CimAssociatedInstance": {
        "source": "MicrosoftDocs/PowerShell-Docs reference/5.1/CimCmdlets/Get-CimAssociatedInstance.md",
        "outputs": ["Microsoft.Management.Infrastructure.CimInstance"], "parameter_sets": [
            {"name": name, "is_default": name == "ComputerSet", "common_parameters": True, "parameters": [
                {"name": "Association", "type": "String", "position": 1, "pipeline_input_modes": ["ByPropertyName"]},
                {"name": "ResultClassName", "type": "String"},
                {"name": "InputObject", "type": "CimInstance", "mandatory": True, "position": 0,
                 "aliases": ["CimInstance"], "pipeline_input_modes": ["ByValue"]},
                {"name": "Namespace", "type": "String", "pipeline_input_modes": ["ByPropertyName"]},
                {"name": "OperationTimeoutSec", "type": "UInt32", "aliases": ["OT"],
                 "pipeline_input_modes": ["ByPropertyName"]},
                {"name": "ResourceUri", "type": "Uri"}, {"name": "KeyOnly", "type": "SwitchParameter"},
                session]}
            for name, session in (
                ("ComputerSet", {"name": "ComputerName", "type": "String[]", "aliases": ["CN", "ServerName"]}),
                ("SessionSet", {"name": "CimSession", "type": "CimSession[]", "mandatory": True,
                                "pipeline_input_modes": ["ByValue"]}))]},
}


def _parameter(entry: Mapping[str, Any]) -> Parameter:
    position = entry.get("position")
    modes = entry.get("pipeline_input_modes") or ()
    return Parameter(entry["name"], entry["type"], bool(entry.get("mandatory")),
                     position if isinstance(position, int) else None, "ByValue" in modes, "ByPropertyName" in modes,
                     tuple(entry.get("aliases") or ()), tuple(entry.get("accepted_values") or ()),
                     bool(entry.get("wildcards")))


def _command(name: str, entry: Mapping[str, Any]) -> Command:
    sets = tuple(ParameterSet(item["name"], tuple(_parameter(p) for p in item["parameters"]),
                              bool(item.get("is_default")), bool(item.get("common_parameters", True)))
                 for item in entry["parameter_sets"])
    return Command(entry.get("name", name), sets, tuple(entry.get("outputs") or ()), entry.get("source", ""))


class Reference:
    """The documented cmdlets by name (case-insensitive), the supplement's included."""

    def __init__(self, path: Path = REFERENCE) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.about: dict[str, Any] = data["_about"]
        self._entries: dict[str, tuple[str, Mapping[str, Any]]] = {
            name.lower(): (name, entry) for name, entry in {**data["cmdlets"], **SUPPLEMENT}.items()}

    @functools.cache  # noqa: B019 - one Reference per process (reference()), its commands built once
    def command(self, name: str) -> Command | None:
        found = self._entries.get(name.lower())
        return _command(*found) if found else None

    def covers(self, name: str) -> bool:
        return name.lower() in self._entries


@functools.cache
def reference() -> Reference:
    return Reference()


# --- values ---------------------------------------------------------------------------------------

_INT_RANGES = {"Byte": (0, 2**8 - 1), "SByte": (-(2**7), 2**7 - 1), "Int16": (-(2**15), 2**15 - 1),
               "UInt16": (0, 2**16 - 1), "Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1),
               "Int64": (-(2**63), 2**63 - 1), "UInt64": (0, 2**64 - 1)}
_FLOATS = {"Single", "Double", "Decimal"}
_ENUMS = {"OnOffState": ("On", "Off"), "ActionPreference": _PREFERENCE}  # in case a page gives no values
_ANYTHING = {"Object", "PSObject"}
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\}?$")
_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")
_AD_IDENTITY = re.compile(r"^AD(Computer|Principal|Object|User|Group|Account|ServiceAccount|OrganizationalUnit|"
                          r"DomainController|Domain|FineGrainedPasswordPolicy|ReplicationSite|AuthenticationPolicy|"
                          r"AuthenticationPolicySilo|ClaimType|ResourceProperty|CentralAccessPolicy|"
                          r"CentralAccessRule|Forest|DirectoryServer)$")


def type_name(documented: str) -> str:
    """``System.Nullable[System.Int64]`` -> ``Int64``; namespaces off, arrays kept (``String[]``)."""
    text = documented.strip()
    nullable = re.fullmatch(r"(?:System\.)?Nullable\[(.+)\]", text)
    if nullable:
        text = nullable.group(1)
    array = text.endswith("[]")
    base = text[:-2] if array else text
    return base.rsplit(".", 1)[-1] + ("[]" if array else "")


def conversion_problem(value: Any, parameter: Parameter) -> str | None:
    """Why ``value`` does not convert to the parameter's type (the table of the module); None when it does."""
    kind = type_name(parameter.type)
    if isinstance(value, Unknown):
        return None
    if kind.endswith("[]"):
        element = replace(parameter, type=kind[:-2])
        if kind == "Byte[]":
            return None if isinstance(value, bytes | bytearray) else f"expects bytes for Byte[], got {_show(value)}"
        items = list(value) if isinstance(value, list | tuple) else [value]
        for item in items:
            problem = conversion_problem(item, element)
            if problem:
                return problem
        return None
    return _scalar_problem(value, kind, parameter)


def _scalar_problem(value: Any, kind: str, parameter: Parameter) -> str | None:
    accepted = parameter.accepted or _ENUMS.get(kind, ())
    if kind in _ANYTHING:
        return None
    if isinstance(value, ScriptBlockLiteral):
        return None if kind == "ScriptBlock" else f"cannot convert a script block to {kind}"
    if kind == "ScriptBlock":
        return "a ScriptBlock is code: Octoprov binds values, never code"
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expects {kind} (a Python int), got {_show(value)}"
        if not low <= value <= high:
            return f"{value} is outside {kind} ({low}..{high})"
        if accepted and str(value) not in accepted:
            return f"{value} is not one of {', '.join(accepted)}"
        return _range_problem(value, parameter)
    if kind in _FLOATS:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else \
            f"expects {kind} (a number), got {_show(value)}"
    if kind in ("Boolean", "SwitchParameter"):
        return None if isinstance(value, bool) else f"expects {kind} (a Python bool), got {_show(value)}"
    if accepted:
        if not isinstance(value, str):
            return f"expects {kind}, one of {', '.join(accepted)}, as text; got {_show(value)}"
        if value.lower() not in {item.lower() for item in accepted}:
            return f"'{value}' is not one of {', '.join(accepted)} ({kind})"
        return None
    if kind in ("String", "Uri"):
        return None if isinstance(value, str) else f"expects {kind} (a Python str), got {_show(value)}"
    if kind == "Char":
        return None if isinstance(value, str) and len(value) == 1 else f"expects one character, got {_show(value)}"
    if kind == "Guid":
        ok = isinstance(value, uuid.UUID) or (isinstance(value, str) and _GUID.match(value))
        return None if ok else f"expects a Guid, got {_show(value)}"
    if kind == "DateTime":
        return None if isinstance(value, datetime.datetime) else f"expects DateTime, got {_show(value)}"
    if kind == "Version":
        return None if isinstance(value, str) and _VERSION.match(value) else f"expects a Version, got {_show(value)}"
    if kind in ("Hashtable", "IDictionary"):
        return None if isinstance(value, dict) else f"expects {kind} (a Python dict), got {_show(value)}"
    if _AD_IDENTITY.match(kind):
        return None if isinstance(value, str) else f"expects {kind} by its identity (a str), got {_show(value)}"
    return f"no Python value converts to {kind} (an object of the host: from the pipeline or inside a script)"


def _range_problem(value: int, parameter: Parameter) -> str | None:
    if parameter.minimum is not None and value < parameter.minimum:
        return f"{value} is below the minimum {parameter.minimum}"
    if parameter.maximum is not None and value > parameter.maximum:
        return f"{value} is above the maximum {parameter.maximum}"
    return None


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _empty_problem(value: Any, parameter: Parameter) -> tuple[str, str] | None:
    """PowerShell refuses null and empty values for a mandatory parameter unless it allows them."""
    if not parameter.mandatory:
        return None
    if value is None and not parameter.allow_null:
        return ("ParameterArgumentValidationErrorNullNotAllowed",
                f"Cannot bind argument to parameter '{parameter.name}' because it is null.")
    if value == "" and not parameter.allow_empty_string:
        return ("ParameterArgumentValidationErrorEmptyStringNotAllowed",
                f"Cannot bind argument to parameter '{parameter.name}' because it is an empty string.")
    if isinstance(value, list | tuple | bytes) and not value and not parameter.allow_empty_collection:
        return ("ParameterArgumentValidationErrorEmptyArrayNotAllowed",
                f"Cannot bind argument to parameter '{parameter.name}' because it is an empty array.")
    return None


def _wildcard_problem(value: Any, parameter: Parameter) -> str | None:
    if not parameter.wildcards:
        return None
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, str) and WILDCARDS.search(item):
            return (f"'{item}' goes to -{parameter.name}, which takes wildcards: it would be matched as a "
                    "pattern, not as the literal value")
    return None


# --- binding --------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    """One parameter set tried: what bound, or why it did not."""

    parameter_set: ParameterSet
    bound: dict[str, Any] = field(default_factory=dict)
    from_pipeline: str | None = None
    error: tuple[str, str] | None = None  # (error id, message)
    missing: list[str] = field(default_factory=list)


def bind(command: Command, named: Mapping[str, Any], positional: Sequence[Any] = (),
         pipeline: PipelineInput | None = None) -> Binding:
    """Bind a call as PowerShell would, or raise the BindingError it would throw."""
    for name in named:  # a name no set knows fails before any set is tried
        if command.parameter(name) is None:
            hint = "" if command.advanced else (" (this script has no [CmdletBinding()] or [Parameter()]: the value "
                                                "would land in $args, unseen by its param() block)")
            raise BindingError(command.name, "NamedParameterNotFound",
                               f"A parameter cannot be found that matches parameter name '{name}'.{hint}")
    attempts = [_try(parameter_set, named, positional, pipeline) for parameter_set in command.sets]
    bound: dict[str, _Attempt] = {}
    for attempt in attempts:  # provider variants of one set (FileSystem, All, ...) count once
        if attempt.error is None and not attempt.missing:
            bound.setdefault(attempt.parameter_set.name, attempt)
    if len(bound) > 1:
        defaults = [attempt for attempt in bound.values() if attempt.parameter_set.default]
        if len(defaults) != 1:
            raise BindingError(command.name, "AmbiguousParameterSet",
                               "Parameter set cannot be resolved using the specified named parameters. "
                               f"(sets that fit: {', '.join(bound)})")
        bound = {defaults[0].parameter_set.name: defaults[0]}
    if bound:
        [chosen] = bound.values()
        return Binding(command.name, chosen.parameter_set.name, chosen.bound, chosen.from_pipeline)
    raise _failure(command, attempts, named)


def _try(parameter_set: ParameterSet, named: Mapping[str, Any], positional: Sequence[Any],
         pipeline: PipelineInput | None) -> _Attempt:
    attempt = _Attempt(parameter_set)
    keys = parameter_set.by_key
    for name, value in named.items():
        parameter = keys.get(name.lower())
        if parameter is None:
            attempt.error = ("NotInSet", f"-{name} is not in the set")
            return attempt
        if parameter.name in attempt.bound:
            attempt.error = ("ParameterAlreadyBound", f"Cannot bind parameter because parameter '{parameter.name}' "
                                                      "is specified more than once.")
            return attempt
        attempt.bound[parameter.name] = value
    open_positions = sorted((parameter for parameter in parameter_set.parameters
                             if parameter.position is not None and parameter.name not in attempt.bound),
                            key=lambda parameter: parameter.position or 0)
    if len(positional) > len(open_positions):
        attempt.error = ("PositionalParameterNotFound", "A positional parameter cannot be found that accepts "
                                                        f"argument '{positional[len(open_positions)]}'.")
        return attempt
    for parameter, value in zip(open_positions, positional, strict=False):
        attempt.bound[parameter.name] = value
    by_name = {parameter.name: parameter for parameter in (*parameter_set.parameters,
                                                           *(COMMON if parameter_set.common else ()))}
    for name, value in attempt.bound.items():
        problem = _value_problem(value, by_name[name])
        if problem:
            attempt.error = problem
            return attempt
    if pipeline is not None:
        taker = _pipeline_taker(parameter_set, attempt.bound, pipeline)
        if taker is None:
            attempt.error = ("InputObjectNotBound", "The input object cannot be bound to any parameters for the "
                                                    "command either because the command does not take pipeline "
                                                    "input or the input and its properties do not match any of the "
                                                    "parameters that take pipeline input.")
            return attempt
        attempt.from_pipeline = taker.name
    attempt.missing = [parameter.name for parameter in parameter_set.parameters
                       if parameter.mandatory and parameter.name not in attempt.bound
                       and parameter.name != attempt.from_pipeline]
    return attempt


def _value_problem(value: Any, parameter: Parameter) -> tuple[str, str] | None:
    empty = _empty_problem(value, parameter)
    if empty:
        return empty
    if value is None:
        return None
    problem = conversion_problem(value, parameter)
    if problem:
        error_id = "ParameterArgumentValidationError" if parameter.accepted or _ENUMS.get(type_name(
            parameter.type)) else "ParameterArgumentTransformationError"
        return error_id, f"Cannot process argument for parameter '{parameter.name}': {problem}."
    wildcard = _wildcard_problem(value, parameter)
    if wildcard:
        return "LiteralValueToWildcardParameter", wildcard
    return None


def _pipeline_taker(parameter_set: ParameterSet, bound: Mapping[str, Any], pipeline: PipelineInput) -> Parameter | None:
    """The parameter the input binds to: ByValue by type first, then ByPropertyName."""
    free = [parameter for parameter in parameter_set.parameters if parameter.name not in bound]
    for parameter in free:
        if parameter.by_value and _takes(parameter.type, pipeline.types):
            return parameter
    wanted = {name.lower() for name in pipeline.properties}
    for parameter in free:
        if parameter.by_property_name and ({parameter.name.lower()} | {a.lower() for a in parameter.aliases}) & wanted:
            return parameter
    return None


def _takes(documented: str, produced: tuple[str, ...]) -> bool:
    element = type_name(documented).removesuffix("[]").lower()
    if not produced or element in ("object", "psobject"):
        return True
    return any(type_name(kind).removesuffix("[]").lower() == element for kind in produced)


def _failure(command: Command, attempts: list[_Attempt], named: Mapping[str, Any]) -> BindingError:
    """The error PowerShell reports when no set binds: a bad value or a missing mandatory parameter
    of the sets that take every given name, else "cannot be resolved"."""
    fitting = [attempt for attempt in attempts if attempt.error is None or attempt.error[0] != "NotInSet"]
    reasons = "; ".join(f"{attempt.parameter_set.name}: {_reason(attempt)}" for attempt in attempts)
    if not fitting:
        return BindingError(command.name, "AmbiguousParameterSet",
                            "Parameter set cannot be resolved using the specified named parameters. One or more "
                            "parameters issued cannot be used together or an insufficient number of parameters "
                            f"were provided. [{reasons}]")
    errors = [attempt.error for attempt in fitting if attempt.error]
    if errors and len(errors) == len(fitting):
        error_id, message = errors[0]
        alike = all(error == errors[0] for error in errors)
        return BindingError(command.name, error_id, message if alike else f"{message} [{reasons}]")
    missing = [attempt for attempt in fitting if attempt.error is None]
    defaults = [attempt for attempt in missing if attempt.parameter_set.default]
    if len(missing) > 1 and defaults:  # PowerShell falls back to the default set, then asks for its parameters
        missing = defaults[:1]
    if len(missing) == 1:
        return BindingError(command.name, "MissingMandatoryParameter",
                            "Cannot process command because of one or more missing mandatory parameters: "
                            f"{' '.join(missing[0].missing)}. [{reasons}]")
    return BindingError(command.name, "AmbiguousParameterSet",
                        f"Parameter set cannot be resolved using the specified named parameters. [{reasons}]")


def _reason(attempt: _Attempt) -> str:
    if attempt.error:
        return attempt.error[1]
    return "missing " + ", ".join(f"-{name}" for name in attempt.missing)


# --- scripts: the param() block as a parameter set ------------------------------------------------

_ACCELERATORS = {"string": "String", "int": "Int32", "int32": "Int32", "long": "Int64", "int64": "Int64",
                 "uint32": "UInt32", "uint64": "UInt64", "int16": "Int16", "byte": "Byte", "bool": "Boolean",
                 "switch": "SwitchParameter", "double": "Double", "hashtable": "Hashtable",
                 "scriptblock": "ScriptBlock", "object": "Object", "psobject": "PSObject", "datetime": "DateTime",
                 "guid": "Guid", "pscredential": "PSCredential", "securestring": "SecureString", "char": "Char",
                 "version": "Version"}
_FLAGS = {"allowemptystring": "allow_empty_string", "allowemptycollection": "allow_empty_collection",
          "allownull": "allow_null"}


def _ps_type(text: str) -> str:
    array = text.endswith("[]")
    base = text[:-2] if array else text
    name = _ACCELERATORS.get(base.lower().removeprefix("system."), base.rsplit(".", 1)[-1])
    return name + ("[]" if array else "")


@functools.cache
def script_command(name: str, text: str) -> Command:
    """A script's ``param()`` block as a command of one parameter set. Positional in declaration
    order, as PowerShell binds a script's parameters (an explicit ``Position =`` is not read: Octoprov
    binds by name); advanced when any parameter carries ``[Parameter()]`` or the block ``[CmdletBinding()]``."""
    nodes = tokenize(text)
    advanced = False
    parameters: list[Parameter] = []
    for index, node in enumerate(nodes):
        if isinstance(node, Group) and node.opener == "[" and _words(node)[:1] == ["CmdletBinding"]:
            advanced = True
        if isinstance(node, Token) and node.kind == "word" and node.text.lower() == "param":
            block = nodes[index + 1] if index + 1 < len(nodes) else None
            if isinstance(block, Group) and block.opener == "(":
                for position, declaration in enumerate(_split(block.children, "comma")):
                    parameter, is_advanced = _declared(declaration, position)
                    advanced = advanced or is_advanced
                    parameters.append(parameter)
            break
        if isinstance(node, Token) and node.kind != "nl":
            break  # the first statement is not param(): the script declares nothing
    return Command(name, (ParameterSet("__AllParameterSets", tuple(parameters), True, advanced),),
                   source="param() block", script=True, advanced=advanced)


def _declared(nodes: list[Node], position: int) -> tuple[Parameter, bool]:
    """One ``[attributes][type]$Name = default`` of a param() block."""
    flags: dict[str, Any] = {}
    kind, name, advanced = "Object", "", False
    for index, node in enumerate(nodes):
        if isinstance(node, Token) and node.kind == "var" and not name:
            name = node.text[1:]
            rest = [item for item in nodes[index + 1:] if not (isinstance(item, Token) and item.kind == "nl")]
            if len(rest) == 2 and isinstance(rest[0], Token) and rest[0].kind == "assign":
                flags["default"] = _literal(rest[1], {})
        if not isinstance(node, Group) or node.opener != "[" or name:
            continue
        words = _words(node)
        head = words[0].lower() if words else ""
        arguments = next((child for child in node.children if isinstance(child, Group) and child.opener == "("), None)
        if head == "parameter":
            advanced = True
            settings = _settings(arguments)
            flags["mandatory"] = settings.get("mandatory", False) is not False
            flags["by_value"] = settings.get("valuefrompipeline", False) is not False
            flags["by_property_name"] = settings.get("valuefrompipelinebypropertyname", False) is not False
        elif head == "validateset" and arguments is not None:
            flags["accepted"] = tuple(_literals(arguments))
        elif head == "alias" and arguments is not None:
            flags["aliases"] = tuple(_literals(arguments))
        elif head == "validaterange" and arguments is not None:
            low, high = (int(value) for value in _literals(arguments))
            flags["minimum"], flags["maximum"] = low, high
        elif head in _FLAGS:
            flags[_FLAGS[head]] = True
        elif arguments is None and words:
            kind = _ps_type("".join(token.text for token in node.children if isinstance(token, Token))
                            + ("[]" if any(isinstance(c, Group) and c.opener == "[" for c in node.children) else ""))
    return Parameter(name, kind, position=position, **flags), advanced


def _settings(arguments: Group | None) -> dict[str, Any]:
    """``Mandatory``, ``Mandatory = $true``, ``Position = 0`` of ``[Parameter(...)]``."""
    settings: dict[str, Any] = {}
    if arguments is None:
        return settings
    for part in _split(arguments.children, "comma"):
        tokens = [node for node in part if isinstance(node, Token) and node.kind != "nl"]
        if not tokens:
            continue
        key = tokens[0].text.lower()
        value: Any = True
        if len(tokens) >= 3 and tokens[1].kind == "assign":
            value = {"$true": True, "$false": False}.get(tokens[2].text.lower(), tokens[2].text)
        settings[key] = value
    return settings


def _literals(group: Group) -> list[str]:
    return [node.text for node in group.children if isinstance(node, Token) and node.kind in ("str", "num", "word")]


def _words(group: Group) -> list[str]:
    return [node.text for node in group.children if isinstance(node, Token) and node.kind == "word"]


# --- scripts: a small PowerShell tokenizer, enough to find the cmdlet calls ---------------------


@dataclass
class Token:
    kind: str  # word, param, str, xstr (expandable), num, var, pipe, semi, nl, comma, assign, amp, redir
    text: str


@dataclass
class Group:
    opener: str  # ( @( $( { @{ [
    children: list[Node]


Node = Token | Group
_CLOSERS = {"(": ")", "@(": ")", "$(": ")", "{": "}", "@{": "}", "[": "]"}
_WORD_END = set(" \t\r\n()[]{}|;,=&\"'`")
_REDIRECTION = re.compile(r"\d?>>?(&\d)?")  # 2>&1, >, >>
_VARIABLE = re.compile(r"\$(\{[^}]*\}|[\w:?^]+)(\.\w+)*")  # $name, $env:x, ${a b}, $_.Path
_PARAMETER = re.compile(r"-[A-Za-z_]\w*:?")  # -Name, -Confirm: (and operators such as -eq)
_NUMBER = re.compile(r"-?(0x[0-9a-fA-F]+|\d+(\.\d+)?)([kKmMgGtTpP][bB])?")
VERB_NOUN = re.compile(r"^[A-Za-z]+-[A-Za-z][A-Za-z0-9]*$")


@functools.cache
def tokenize(text: str) -> list[Node]:
    """The script as a tree: tokens, and groups for each bracket pair (cached: do not change it)."""
    nodes, _end = _scan(text, 0, None)
    return nodes


def _scan(text: str, start: int, closer: str | None) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    i = start
    while i < len(text):
        char = text[i]
        two = text[i:i + 2]
        if closer is not None and char == closer:
            return nodes, i + 1
        if char == "\n":
            nodes.append(Token("nl", "\n"))
            i += 1
        elif char in " \t\r":
            i += 1
        elif char == "`" and text[i + 1:i + 2] in ("\n", "\r"):
            i += 2 if text[i + 1] == "\n" else 3  # line continuation
        elif two == "<#":
            end = text.find("#>", i)
            i = len(text) if end < 0 else end + 2
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char == "'":
            end = i + 1
            while end < len(text):
                if text[end] == "'" and text[end + 1:end + 2] == "'":
                    end += 2
                elif text[end] == "'":
                    break
                else:
                    end += 1
            nodes.append(Token("str", text[i + 1:end].replace("''", "'")))
            i = end + 1
        elif char == '"':
            end, expandable = _double_quoted(text, i + 1)
            nodes.append(Token("xstr" if expandable else "str", text[i + 1:end]))
            i = end + 1
        elif two in ("@(", "$(", "@{") or char in "({[":
            opener = two if two in ("@(", "$(", "@{") else char
            children, i = _scan(text, i + len(opener), _CLOSERS[opener])
            nodes.append(Group(opener, children))
        elif char in ")}]":
            i += 1  # unbalanced: ignored
        elif char == "|":
            nodes.append(Token("pipe", "|"))
            i += 1
        elif char == ";":
            nodes.append(Token("semi", ";"))
            i += 1
        elif char == ",":
            nodes.append(Token("comma", ","))
            i += 1
        elif redirection := _REDIRECTION.match(text, i):
            nodes.append(Token("redir", redirection.group(0)))
            i = redirection.end()
        elif char == "&":
            nodes.append(Token("amp", "&"))
            i += 1
        elif char == "=" or re.match(r"[+\-*/]=", two):
            length = 1 if char == "=" else 2
            nodes.append(Token("assign", text[i:i + length]))
            i += length
        elif char == "$":
            variable = _VARIABLE.match(text, i)
            word = variable.group(0) if variable else "$"
            nodes.append(Token("var", word))
            i += len(word)
        elif parameter := _PARAMETER.match(text, i):
            nodes.append(Token("param", parameter.group(0)))
            i = parameter.end()
        elif (number := _NUMBER.match(text, i)) and text[number.end():number.end() + 1] in _WORD_END | {""}:
            nodes.append(Token("num", number.group(0)))
            i = number.end()
        else:  # a bare word (2x and 1st too)
            end = i + 1
            while end < len(text) and text[end] not in _WORD_END:
                end += 1
            nodes.append(Token("word", text[i:end]))
            i = end
    return nodes, i


def _double_quoted(text: str, start: int) -> tuple[int, bool]:
    """(index of the closing quote, whether the string expands variables)."""
    i, expandable = start, False
    while i < len(text):
        char = text[i]
        if char == "`" or (char == '"' and text[i + 1:i + 2] == '"'):  # an escaped character, a doubled quote
            i += 2
        elif char == '"':
            return i, expandable
        elif text[i:i + 2] == "$(":
            expandable = True
            _children, i = _scan(text, i + 2, ")")
        elif char == "$":
            expandable = True
            i += 1
        else:
            i += 1
    return i, expandable


def _split(nodes: list[Node], kind: str) -> list[list[Node]]:
    parts: list[list[Node]] = [[]]
    for node in nodes:
        if isinstance(node, Token) and node.kind == kind:
            parts.append([])
        else:
            parts[-1].append(node)
    return [part for part in parts if part]


@dataclass(frozen=True)
class Invocation:
    """A cmdlet call written inside a script."""

    name: str
    named: dict[str, Any]
    positional: tuple[Any, ...]
    pipeline: PipelineInput | None
    line: int = 0


def script_invocations(text: str, variables: Mapping[str, Any] | None = None) -> list[Invocation]:
    """Every ``Verb-Noun`` command written in ``text``, with its arguments as values: literals as
    they are, ``variables`` (a script's declared parameters, by name) as samples of their type,
    other expressions as UNKNOWN. Commands inside groups (``@( )``, ``{ }``, ...) are found too."""
    return list(_invocations(tokenize(text), {key.lower(): value for key, value in (variables or {}).items()}))


def _invocations(nodes: list[Node], variables: Mapping[str, Any]) -> Iterator[Invocation]:
    for statement in _statements(nodes):
        previous: Command | bool | None = False  # False: no command before this one in the pipeline
        for element in _split(statement, "pipe"):
            assignments = [index for index, node in enumerate(element)
                           if isinstance(node, Token) and node.kind == "assign"]
            body = element[assignments[-1] + 1:] if assignments else element
            first = body[0] if body else None
            invocation: Invocation | None = None
            if isinstance(first, Token) and first.kind == "word" and VERB_NOUN.match(first.text):
                pipeline = None if previous is False else (
                    PipelineInput(previous.outputs) if isinstance(previous, Command) else ANY_INPUT)
                invocation = _invocation(first.text, body[1:], variables, pipeline)
                yield invocation
            previous = reference().command(invocation.name) if invocation else True
            for node in element:
                yield from _nested(node, variables)


def _nested(node: Node, variables: Mapping[str, Any]) -> Iterator[Invocation]:
    if isinstance(node, Group):
        yield from _invocations(node.children, variables)


def _statements(nodes: list[Node]) -> Iterator[list[Node]]:
    """Statements split at newlines and semicolons; a line ending in ``|`` goes on."""
    current: list[Node] = []
    for node in nodes:
        if isinstance(node, Token) and node.kind in ("nl", "semi"):
            last = current[-1] if current else None
            if node.kind == "nl" and isinstance(last, Token) and last.kind == "pipe":
                continue
            if current:
                yield current
            current = []
        else:
            current.append(node)
    if current:
        yield current


def _invocation(name: str, arguments: list[Node], variables: Mapping[str, Any],
                pipeline: PipelineInput | None) -> Invocation:
    command = reference().command(name)
    named: dict[str, Any] = {}
    positional: list[Any] = []
    items = [node for node in arguments if not (isinstance(node, Token) and node.kind == "redir")]
    i = 0
    while i < len(items):
        node = items[i]
        if isinstance(node, Token) and node.kind == "param":
            parameter_name = node.text[1:].rstrip(":")
            parameter = command.parameter(parameter_name) if command else None
            switch = parameter is not None and type_name(parameter.type) == "SwitchParameter"
            following = items[i + 1] if i + 1 < len(items) else None
            takes_value = node.text.endswith(":") or (
                not switch and following is not None and not (isinstance(following, Token)
                                                              and following.kind == "param"))
            if takes_value:
                value, i = _value(items, i + 1, variables)
                named[parameter_name] = value
            else:
                named[parameter_name] = True
                i += 1
        else:
            value, i = _value(items, i, variables)
            positional.append(value)
    return Invocation(name, named, tuple(positional), pipeline)


def _value(items: list[Node], i: int, variables: Mapping[str, Any]) -> tuple[Any, int]:
    """One argument (a list when items are separated by commas) starting at ``items[i]``."""
    values = []
    while True:
        node = items[i]
        if isinstance(node, Group) and node.opener == "[" and i + 1 < len(items):
            values.append(UNKNOWN)  # a cast: [uint32]13
            i += 2
        else:
            values.append(_literal(node, variables))
            i += 1
        following = items[i] if i < len(items) else None
        if not (isinstance(following, Token) and following.kind == "comma"):
            break
        i += 1
    return (values[0] if len(values) == 1 else values), i


def _literal(node: Node, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, Group):
        return SCRIPT_BLOCK if node.opener == "{" else ({} if node.opener == "@{" else UNKNOWN)
    if node.kind == "str":
        return node.text
    if node.kind == "num":
        return int(node.text, 0) if re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", node.text) else UNKNOWN
    if node.kind == "word":
        return node.text
    if node.kind == "var":
        name = node.text[1:].lower()
        constants = {"true": True, "false": False, "null": None}
        if name in constants:
            return constants[name]
        return variables.get(name, UNKNOWN)
    return UNKNOWN


# --- Octoprov's commands --------------------------------------------------------------------------

_SAMPLES = {"String": "x", "Int32": 1, "Int64": 1, "UInt32": 1, "UInt64": 1, "Boolean": True, "SwitchParameter": True,
            "Byte[]": b"x", "String[]": ["x"]}


def script_variables(command: Command, bound: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A script's parameters as the calls inside it see them: the values ``bound`` to them (the
    others then hold their default, else $null); without ``bound``, samples of their declared type."""
    if bound is None:
        return {parameter.name: _SAMPLES.get(type_name(parameter.type), UNKNOWN)
                for parameter in command.sets[0].parameters}
    return {parameter.name: bound.get(parameter.name, parameter.default) for parameter in command.sets[0].parameters}


def command_for(name: str, script: str | None = None) -> Command:
    """The cmdlet of the reference, or the script by its param() block; an unknown cmdlet is what
    PowerShell reports for a command it does not find."""
    if script is not None:
        return script_command(name, script)
    found = reference().command(name)
    if found is None:
        raise BindingError(name, "CommandNotFoundException",
                           f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, "
                           "or operable program.", category="ObjectNotFound", exception="CommandNotFoundException")
    return found


def check_pipeline(calls: Iterable[tuple[str, Mapping[str, Any], str | None]],
                   first_input: PipelineInput | None = None) -> list[Binding]:
    """Each (name, parameters, script text or None) of a pipeline: the first with ``first_input``
    (none: it starts the pipeline), each following one with what the one before it writes."""
    bindings: list[Binding] = []
    pipeline = first_input
    for name, parameters, script in calls:
        command = command_for(name, script)
        binding = bind(command, parameters, (), pipeline)
        if script is not None:  # and the calls the script makes with these values
            errors = check_script_body(name, script, binding.bound).errors
            if errors:
                raise errors[0]
        bindings.append(binding)
        pipeline = PipelineInput(command.outputs)
    return bindings


def check_command(command: Any) -> list[Binding]:
    """An Octoprov ``Cmdlet`` or ``Pipeline`` (octoprov.winrm.commands) as the host would bind it."""
    items = (command,) if not isinstance(command, tuple) else command
    return check_pipeline((item.name, dict(item.parameters), item.script) for item in items)


def check_listed(entry: Mapping[str, Any], scripts: Mapping[str, str]) -> list[Binding]:
    """One command of a dry run's ``hyperv-commands.json`` (``{"cmdlet"|"script": name, "parameters"}``
    or ``{"pipeline": [...]}``); ``scripts``: the fixed scripts' texts by name."""
    parts = entry.get("pipeline", [entry])
    return check_pipeline((part.get("cmdlet") or part["script"], part["parameters"],
                           scripts[part["script"]] if "script" in part else None) for part in parts)


@dataclass
class ScriptReport:
    """What the calls inside one script bind to, and the commands the reference does not cover."""

    bindings: list[Binding] = field(default_factory=list)
    uncovered: set[str] = field(default_factory=set)
    errors: list[BindingError] = field(default_factory=list)


def check_script_body(name: str, text: str, bound: Mapping[str, Any] | None = None) -> ScriptReport:
    """Every cmdlet call inside a script, its parameters holding the values ``bound`` to them
    (None: samples of their declared types). A call that does not bind is reported under the script's
    name, as PowerShell's error record names the script's line."""
    report = ScriptReport()
    variables = script_variables(script_command(name, text), bound)
    for invocation in script_invocations(text, variables):
        command = reference().command(invocation.name)
        if command is None:
            report.uncovered.add(invocation.name)
            continue
        try:
            report.bindings.append(bind(command, invocation.named, invocation.positional, invocation.pipeline))
        except BindingError as exc:
            report.errors.append(BindingError(name, exc.error_id, f"in {name}: {exc.command}: {exc.message}",
                                              category=exc.category, exception=exc.exception))
    return report
