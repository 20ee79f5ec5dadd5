"""Rendered Autounattend files checked against Microsoft's Unattended Windows Setup Reference.

Windows Setup is the only real judge of an answer file and it cannot run here. What it rejects
("could not parse or process the unattend answer file") or silently ignores (a misspelt
element, a setting in a pass where it does not apply, a component it cannot match) is what
the reference documents, so every element is held to
``tests/data/windows-reference/unattend-settings.json`` (see that folder's README):

- the element exists at that path (component name + element path), spelt as documented;
- its ``<settings pass="...">`` is one the reference lists for it (a page that lists none takes
  its nearest ancestor's, ``passes_inherited``; with neither, the element is a finding);
- a list item carries ``wcm:action`` (one the reference documents) and its key: the
  ``wcm:keyValue`` attribute or the key element the reference names, unique among its siblings;
  anything that is not a list item carries neither and appears once;
- its value lies in the documented value set or range, is an integer where the reference says
  Integer, is not longer than documented, and is not empty unless the reference allows it.

Booleans: the reference prints some value tables as ``True``/``False`` and most as
``true``/``false``. They are the same boolean type, so a boolean table is read as
``{true, false}``. Our files must still write exactly ``true`` or ``false``: nothing here shows
that Windows Setup accepts other casings (the catalogs type these settings as xsd:boolean,
whose lexical forms are lowercase, and Windows SIM writes them so). Every other value set is
compared case-sensitively. Only the reference's spelling is case-folded, never our output.

Where the reference is known to be incomplete (a 2019 snapshot; no architecture lists), what
we rely on beyond it is listed explicitly below, each entry with its reason; nothing is
skipped wholesale.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from tests.support import TESTS

REFERENCE = TESTS / "data" / "windows-reference" / "unattend-settings.json"
UNATTEND = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
ACTION, KEY_VALUE = f"{{{WCM}}}action", f"{{{WCM}}}keyValue"
PASSES = ("windowsPE", "offlineServicing", "generalize", "specialize", "auditSystem", "auditUser", "oobeSystem")
WCM_ACTIONS = frozenset({"add", "modify", "remove"})
BOOLEANS = frozenset({"true", "false"})
_INTEGER = re.compile(r"-?[0-9]+")

# The identity every Microsoft component carries in the reference's XML examples; Setup matches a
# component by it and ignores one it cannot match, without an error.
COMPONENT_IDENTITY = {"publicKeyToken": "31bf3856ad364e35", "language": "neutral", "versionScope": "nonSxS"}
# processorArchitecture: the reference lists none per component (``architectures: null``) and
# its examples use only these two.
EXAMPLE_ARCHITECTURES = frozenset({"amd64", "x86"})
# Beyond the reference, each with why it is valid.
ARCHITECTURES_NOT_IN_REFERENCE: dict[str, str] = {
    "arm64": "Windows on ARM (Windows 10 1709 and later, Windows 11, Server arm64 builds) names its components "
             "processorArchitecture=\"arm64\"; the reference's examples predate it and show only amd64 and x86. "
             "Octoprov renders it for images registered as arm64 (answerfiles.autounattend.ARCHITECTURES).",
}


@dataclass(frozen=True)
class NotInReference:
    """A setting Windows Setup takes that the 2019 reference lacks, with the facts the reference
    would have given and why we know them: such an element is checked as strictly as the others."""

    path: str
    passes: tuple[str, ...]
    reason: str
    allowed_values: frozenset[str] | None = None
    list_item: bool = False


# Settings our templates use that the reference does not document (added after January 2019).
# None today: every element Octoprov writes is in the 2019 reference. A new entry names the
# setting's path, its passes and, in ``reason``, the Microsoft page that documents it.
SETTINGS_NOT_IN_REFERENCE: tuple[NotInReference, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One thing Windows Setup would reject or ignore: where (pass and setting path) and what."""

    pass_name: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path} [{self.pass_name or '-'}]: {self.problem}"


@dataclass(frozen=True)
class Setting:
    """One entry of the reference, with what the check needs already decided."""

    path: str
    passes: tuple[str, ...]  # empty: the reference names no pass for it
    children: frozenset[str] = frozenset()
    list_item: bool = False
    list_actions: tuple[str, ...] = ()
    key_attribute: bool = False  # keyed by wcm:keyValue
    key_element: str | None = None  # keyed by this child element
    allowed_values: frozenset[str] | None = None
    boolean: bool = False
    value_ranges: tuple[tuple[int, int], ...] = ()
    integer: bool = False
    empty_allowed: bool | None = None
    max_length: int | None = None
    # a Key or Value the docs describe as a child but XML writes as the parent's wcm:keyValue or text
    pseudo: str | None = None

    @classmethod
    def from_entry(cls, path: str, entry: Mapping[str, Any]) -> Setting:
        passes = entry.get("passes") or (entry.get("passes_inherited") or {}).get("passes") or ()
        key = entry.get("list_key") or {}
        allowed: list[str] = entry.get("allowed_values") or []
        value_type = entry.get("value_type")
        # a boolean table, however the page cased it (see the module's docstring)
        boolean = value_type == "Boolean" or (bool(allowed) and {value.lower() for value in allowed} == BOOLEANS)
        return cls(
            path=path, passes=tuple(passes), children=frozenset(entry.get("children") or ()),
            list_item=bool(entry.get("list_item")), list_actions=tuple(entry.get("list_actions") or ()),
            key_attribute=key.get("attribute") == "wcm:keyValue", key_element=key.get("element"),
            allowed_values=BOOLEANS if boolean else (frozenset(allowed) if allowed else None),
            boolean=boolean,
            value_ranges=tuple((int(r["min"]), int(r["max"])) for r in entry.get("value_ranges") or ()),
            integer=value_type == "Integer", empty_allowed=entry.get("empty_allowed"),
            max_length=entry.get("max_length"),
            pseudo=entry.get("xml_form"),
        )

    @classmethod
    def from_supplement(cls, entry: NotInReference) -> Setting:
        return cls(path=entry.path, passes=entry.passes, list_item=entry.list_item,
                   list_actions=("add",) if entry.list_item else (), allowed_values=entry.allowed_values)


@dataclass
class Reference:
    """The reference's settings by path, and its component names."""

    settings: dict[str, Setting]
    components: frozenset[str]
    architectures: frozenset[str] = field(
        default=EXAMPLE_ARCHITECTURES | frozenset(ARCHITECTURES_NOT_IN_REFERENCE))

    @classmethod
    def load(cls, path: Path = REFERENCE, supplements: Iterable[NotInReference] = SETTINGS_NOT_IN_REFERENCE,
             ) -> Reference:
        data = json.loads(path.read_text(encoding="utf-8"))
        settings = {key: Setting.from_entry(key, entry) for key, entry in data["settings"].items()}
        for key, setting in list(settings.items()):  # the Key/Value of an item keyed by wcm:keyValue
            parent = settings.get(key.rpartition("/")[0])
            if setting.pseudo is None and parent is not None and parent.key_attribute and \
                    key.rpartition("/")[2] in ("Key", "Value"):
                settings[key] = replace(setting, pseudo="text of the parent element"
                                         if key.endswith("/Value") else "wcm:keyValue attribute of the parent")
        for supplement in supplements:
            if supplement.path in settings:
                raise ValueError(f"{supplement.path} is in the reference: it needs no allow-list entry")
            settings[supplement.path] = Setting.from_supplement(supplement)
            parent_path = supplement.path.rpartition("/")[0]
            if parent_path in settings:
                parent = settings[parent_path]
                settings[parent_path] = replace(parent, children=parent.children | {supplement.path.split("/")[-1]})
        return cls(settings, frozenset(data["components"]))

    def check(self, xml: str | bytes) -> list[Finding]:
        """Every way ``xml`` departs from the reference; empty when it conforms."""
        try:
            root = ElementTree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
        except ElementTree.ParseError as error:  # Setup stops at once on a file it cannot parse
            return [Finding("", "", f"not well-formed XML: {error}")]
        findings: list[Finding] = []
        if root.tag != f"{{{UNATTEND}}}unattend":
            return [Finding("", _local(root.tag), f"the root element must be unattend in {UNATTEND}")]
        passes: Counter[str] = Counter()
        for settings in _elements(root):
            pass_name = settings.get("pass", "")
            if settings.tag != f"{{{UNATTEND}}}settings":
                findings.append(Finding(pass_name, _local(settings.tag), "only <settings> elements are checked "
                                        "here (the reference does not cover <servicing>)"))
                continue
            if pass_name not in PASSES:
                findings.append(Finding(pass_name, "settings", f"unknown pass {pass_name!r}"))
                continue
            passes[pass_name] += 1
            if passes[pass_name] == 2:
                findings.append(Finding(pass_name, "settings", "the pass appears more than once"))
            self._components(settings, pass_name, findings)
        return findings

    def _components(self, settings: Element, pass_name: str, findings: list[Finding]) -> None:
        seen: set[tuple[str, str]] = set()
        for component in _elements(settings):
            name = component.get("name", "")
            if component.tag != f"{{{UNATTEND}}}component":
                findings.append(Finding(pass_name, _local(component.tag), "a <settings> holds only <component>s"))
                continue
            if name not in self.components:
                findings.append(Finding(pass_name, name, "no such component in the reference"
                                        + _suggestion(name, self.components)))
                continue
            architecture = component.get("processorArchitecture", "")
            if architecture not in self.architectures:
                findings.append(Finding(pass_name, name, f"processorArchitecture {architecture!r} is not one of "
                                        f"{sorted(self.architectures)}"))
            for attribute, expected in COMPONENT_IDENTITY.items():
                if component.get(attribute) != expected:
                    findings.append(Finding(pass_name, name, f"{attribute} must be {expected!r}, is "
                                            f"{component.get(attribute)!r}: Setup would not match the component"))
            if (name, architecture) in seen:
                findings.append(Finding(pass_name, name, "the component appears twice in this pass"))
            seen.add((name, architecture))
            if (component.text or "").strip():
                findings.append(Finding(pass_name, name, "text directly inside a component"))
            self._children(component, name, pass_name, findings)

    def _children(self, parent: Element, parent_path: str, pass_name: str, findings: list[Finding],
                  pass_reported: bool = False) -> None:
        """Check ``parent``'s elements and theirs; a wrong pass is reported once, at the topmost element."""
        children = _elements(parent)
        counts = Counter(child.tag for child in children)
        keys: dict[str, set[str]] = {}
        reported: set[str] = set()
        for child in children:
            name = _local(child.tag)
            path = f"{parent_path}/{name}"
            if not child.tag.startswith(f"{{{UNATTEND}}}"):
                findings.append(Finding(pass_name, path, f"not in the unattend namespace {UNATTEND}"))
                continue
            setting = self.settings.get(path)
            if setting is None:
                parent_setting = self.settings.get(parent_path)
                known = parent_setting.children if parent_setting else self._top_level(parent_path)
                findings.append(Finding(pass_name, path, "no such setting in the reference" + _suggestion(name, known)))
                continue
            if setting.pseudo:
                findings.append(Finding(pass_name, path, f"not an element: it is written as the {setting.pseudo}"))
                continue
            wrong_pass = pass_name not in setting.passes
            if not setting.passes:
                findings.append(Finding(pass_name, path, "the reference names no pass for this setting"))
            elif wrong_pass and not pass_reported:
                findings.append(Finding(pass_name, path, f"not valid in the {pass_name} pass (valid: "
                                        f"{', '.join(setting.passes)})"))
            self._attributes(child, setting, pass_name, findings)
            if setting.list_item:
                key = self._list_key(child, setting, pass_name, findings)
                if key is not None and key in keys.setdefault(name, set()):
                    findings.append(Finding(pass_name, path, f"two list items with the key {key!r}"))
                if key is not None:
                    keys[name].add(key)
            elif counts[child.tag] > 1 and path not in reported:
                reported.add(path)
                findings.append(Finding(pass_name, path, f"appears {counts[child.tag]} times but is not a list item"))
            if self._is_container(setting):
                if (child.text or "").strip():
                    findings.append(Finding(pass_name, path, "a container setting holds text"))
                self._children(child, path, pass_name, findings, pass_reported or wrong_pass)
            else:
                if len(child):  # a value setting has no child elements: name them as unknown
                    self._children(child, path, pass_name, findings, pass_reported or wrong_pass)
                findings.extend(Finding(pass_name, path, problem) for problem in self._value_problems(child, setting))

    def _top_level(self, component: str) -> frozenset[str]:
        prefix = component + "/"
        return frozenset(path[len(prefix):] for path in self.settings
                         if path.startswith(prefix) and "/" not in path[len(prefix):])

    def _is_container(self, setting: Setting) -> bool:
        return any(not self.settings[f"{setting.path}/{child}"].pseudo for child in setting.children
                   if f"{setting.path}/{child}" in self.settings)

    @staticmethod
    def _attributes(element: Element, setting: Setting, pass_name: str, findings: list[Finding]) -> None:
        for attribute in element.attrib:
            if attribute not in (ACTION, KEY_VALUE):
                findings.append(Finding(pass_name, setting.path, f"unknown attribute {attribute}"))
            elif not setting.list_item:
                findings.append(Finding(pass_name, setting.path, f"wcm:{_local(attribute)} on a setting the reference "
                                        "does not list as a list item"))

    def _list_key(self, element: Element, setting: Setting, pass_name: str, findings: list[Finding]) -> str | None:
        action = element.get(ACTION)
        documented = setting.list_actions or tuple(sorted(WCM_ACTIONS))
        if action is None:
            findings.append(Finding(pass_name, setting.path, "a list item without wcm:action"))
        elif action not in documented:
            findings.append(Finding(pass_name, setting.path, f"wcm:action={action!r}; the reference documents "
                                    f"{', '.join(documented)}"))
        if setting.key_attribute:
            key = element.get(KEY_VALUE)
            if not key:
                findings.append(Finding(pass_name, setting.path, "a list item without its wcm:keyValue"))
            return key or None
        if setting.key_element:
            found = [child for child in _elements(element) if child.tag == f"{{{UNATTEND}}}{setting.key_element}"]
            if not found:
                findings.append(Finding(pass_name, setting.path, f"a list item without its key element "
                                        f"{setting.key_element}"))
                return None
            return found[0].text or ""
        return None

    def _value_problems(self, element: Element, setting: Setting) -> list[str]:
        text = element.text or ""
        rules = [setting]
        value = self.settings.get(f"{setting.path}/Value")
        if setting.key_attribute and value is not None:
            rules.append(value)  # the documented constraints of a keyed item's text
        problems = []
        for rule in rules:
            if not text:
                if rule.empty_allowed is not True:
                    problems.append("empty, and the reference does not allow an empty value")
                break
            problems.extend(_value_problem(text, rule))
        return problems


def _value_problem(text: str, setting: Setting) -> list[str]:
    problems = []
    in_set = setting.allowed_values is not None and text in setting.allowed_values
    in_range = _INTEGER.fullmatch(text) is not None and any(low <= int(text) <= high
                                                            for low, high in setting.value_ranges)
    if (setting.allowed_values is not None or setting.value_ranges) and not (in_set or in_range):
        documented = sorted(setting.allowed_values or ()) + [f"{low}-{high}" for low, high in setting.value_ranges]
        how = " (booleans are written in lowercase)" if setting.boolean and text.lower() in BOOLEANS else ""
        problems.append(f"{text!r} is not a documented value {documented}{how}")
    if setting.integer and not _INTEGER.fullmatch(text):
        problems.append(f"{text!r} is not an integer")
    if setting.max_length is not None and len(text) > setting.max_length:
        problems.append(f"{len(text)} characters, the reference allows {setting.max_length}")
    return problems


def _elements(parent: Element) -> list[Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


@functools.cache
def reference() -> Reference:
    """The reference as shipped, loaded once per test session."""
    return Reference.load()


def check_answer_file(xml: str | bytes) -> list[Finding]:
    """The findings for one rendered Autounattend.xml against the shipped reference."""
    return reference().check(xml)


def assert_conforms(xml: str | bytes, what: str = "the answer file") -> None:
    """Fail with every finding listed, one per line, so a failure says what to mend."""
    findings = check_answer_file(xml)
    assert not findings, f"{what} departs from Microsoft's unattend reference:\n" + "\n".join(map(str, findings))
