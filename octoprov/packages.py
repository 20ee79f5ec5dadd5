"""Post-install packages: a script for one OS that a new machine runs, with parameters a small
subset of JSON Schema declares.

The runner binds parameters (PowerShell parameters on Windows, exported shell variables with
shell quoting on Linux) instead of pasting them into the script, so a value can never become
code; names must therefore be identifiers in both languages and must not shadow what either
shell gives a meaning to. Parameters are checked when a task names the package, so that a typo
is a 400 and not a failure an hour later, and again by the runner, since the package may have
changed in between.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol, Self

from pydantic import AfterValidator, Field, model_validator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from octoprov.errors import Conflict, InvalidRequest
from octoprov.lookup import fetch
from octoprov.models import Package
from octoprov.references import active_post_install, save_unique
from octoprov.specs import Spec, Timestamp, View, report
from octoprov.validation import check_display_name, check_parameter_name, check_unreserved_variable

OS_TYPES = ("windows", "linux")
VALUE_MAX = 4096  # a parameter is a setting, not a file: longer strings belong in the script
INTEGER_RANGE = (-(2**63), 2**63 - 1)  # PowerShell [long], 64-bit shell arithmetic

def no_nul(text: str) -> str:
    """Refuse NUL, which neither PostgreSQL text nor JSONB can store."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


ParameterName = Annotated[str, AfterValidator(check_parameter_name), AfterValidator(check_unreserved_variable)]
Value = str | int | bool
Description = Annotated[str, Field(max_length=4000), AfterValidator(no_nul)]


class ParameterSchema(Spec):
    """One parameter: its type, and optionally a pattern (strings), bounds (integers), allowed values and
    a default."""

    type: Literal["string", "integer", "boolean"]
    description: Annotated[str, Field(max_length=1000), AfterValidator(no_nul)] | None = None
    pattern: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(no_nul)] | None = Field(
        default=None, description="Python regular expression searched for in a string value (anchor it with ^...$ "
                                  "to match the whole value)")
    enum: list[Value] | None = Field(default=None, min_length=1, max_length=100)
    minimum: int | None = None
    maximum: int | None = None
    default: Value | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: dict[str | tuple[str | int, ...], str | None] = {}
        if self.pattern is not None:
            if self.type != "string":
                problems["pattern"] = "only for parameters of type string"
            else:
                try:
                    re.compile(self.pattern)
                except re.error as exc:
                    problems["pattern"] = f"not a valid regular expression: {exc}"
        for bound in ("minimum", "maximum"):
            if getattr(self, bound) is not None and self.type != "integer":
                problems[bound] = "only for parameters of type integer"
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            problems["maximum"] = "must not be less than minimum"
        if not problems:  # a broken pattern or range cannot judge values
            for index, item in enumerate(self.enum or []):
                problems[("enum", index)] = value_problem(self.model_dump(exclude={"enum"}), item)
            if self.default is not None:
                problems["default"] = value_problem(self.model_dump(), self.default)
        report(problems)
        return self


class ParametersSchema(Spec):
    """The parameters a package takes, as a small subset of JSON Schema: properties by name, and which of
    them are required. A parameter the schema does not declare is refused."""

    type: Literal["object"] = "object"
    properties: Annotated[dict[ParameterName, ParameterSchema], Field(max_length=64)] = Field(default_factory=dict)
    required: Annotated[list[str], Field(max_length=64)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _required_declared(self) -> Self:
        report({("required", index): f"{name} is not among the properties" if name not in self.properties else
                ("listed twice" if name in self.required[:index] else None)
                for index, name in enumerate(self.required)})
        return self


class PackageSpec(Spec):
    name: Annotated[str, AfterValidator(check_display_name)]
    description: Description | None = None
    os_type: Literal["windows", "linux"]
    script: Annotated[str, AfterValidator(no_nul)] = Field(
        min_length=1, max_length=262144,
        description="windows: a PowerShell script (parameters bound as its param() block's parameters); linux: a "
                    "POSIX sh script (parameters exported as variables)")
    parameters_schema: ParametersSchema = Field(default_factory=ParametersSchema)
    idempotent: bool = Field(default=False, description="Safe to run again: a failed run is retried")
    timeout_s: int = Field(default=1800, ge=1, le=86400, alias="timeoutSeconds")


class PackageView(View):
    id: int
    name: str
    description: str | None
    os_type: str
    script: str
    parameters_schema: dict[str, Any]
    idempotent: bool
    timeout_s: int = Field(alias="timeoutSeconds")
    created_at: Timestamp
    updated_at: Timestamp


class PackageLike(Protocol):
    """What checking parameters needs of a package: a stored one, or a test's stand-in."""

    name: str
    os_type: str
    parameters_schema: dict[str, Any]


def value_problem(declared: dict[str, Any], value: object) -> str | None:
    """What is wrong with ``value`` for a parameter ``declared`` so (a ParameterSchema as JSON), or None."""
    kind = declared.get("type")
    if kind == "string":
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > VALUE_MAX:
            return f"must be at most {VALUE_MAX} characters"
        if "\x00" in value:
            return "must not contain NUL characters"
        if declared.get("pattern") and re.search(declared["pattern"], value) is None:
            return f"must match {declared['pattern']}"
    elif kind == "integer":
        if type(value) is not int:
            return "must be a whole number"
        low, high = declared.get("minimum"), declared.get("maximum")
        if not INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
            return "must fit in 64 bits"
        if low is not None and high is not None and not low <= value <= high:
            return f"must be between {low} and {high}"
        if low is not None and value < low:
            return f"must be at least {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
    elif kind == "boolean":
        if type(value) is not bool:
            return "must be true or false"
    else:
        return f"has an unknown type {kind!r} in the package's schema"
    enum = declared.get("enum")
    if enum is not None and not any(type(item) is type(value) and item == value for item in enum):
        return "must be one of " + ", ".join(map(str, enum))
    return None


def validate_parameters(package: PackageLike, parameters: object, prefix: str = "parameters") -> dict[str, Any]:
    """The parameters checked against the package's schema, with defaults filled in; InvalidRequest
    names each problem under ``prefix`` (``postInstall.runPackages[0].parameters.instanceName``)."""
    if not isinstance(parameters, dict):
        raise InvalidRequest({prefix: "must be a JSON object"})
    schema = package.parameters_schema or {}
    declared = schema.get("properties") or {}
    problems: dict[str, str | None] = {}
    for name, value in parameters.items():
        if name not in declared:
            known = ", ".join(declared) or "none"
            problems[f"{prefix}.{name}"] = f"package {package.name} has no such parameter (it has: {known})"
        else:
            problems[f"{prefix}.{name}"] = value_problem(declared[name], value)
    values = dict(parameters)
    for name, spec in declared.items():
        if name in values:
            continue
        if spec.get("default") is not None:
            values[name] = spec["default"]
        elif name in (schema.get("required") or []):
            problems[f"{prefix}.{name}"] = f"required by package {package.name}"
    found = {path: problem for path, problem in problems.items() if problem}
    if found:
        raise InvalidRequest(found)
    return values


def _apply(package: Package, spec: PackageSpec) -> None:
    package.name, package.description, package.os_type = spec.name, spec.description, spec.os_type
    package.script, package.idempotent, package.timeout_s = spec.script, spec.idempotent, spec.timeout_s
    package.parameters_schema = spec.parameters_schema.model_dump(mode="json", by_alias=True, exclude_none=True)


def package_query(os_type: str | None = None) -> Select[Package]:
    query = select(Package).order_by(Package.id)
    return query.where(Package.os_type == os_type) if os_type else query


def register_package(session: Session, spec: PackageSpec) -> Package:
    package = Package()
    _apply(package, spec)
    save_unique(session, package, "package")
    return package


def get_package(session: Session, package_id: int) -> Package:
    return fetch(session, Package, package_id, "package")


def update_package(session: Session, package_id: int, spec: PackageSpec) -> Package:
    """Replace a package. Its OS stays while an open task runs it: that task was checked against it."""
    package = get_package(session, package_id)
    user = _open_task_using(session, package_id)
    if spec.os_type != package.os_type and user is not None:
        raise InvalidRequest({"osType": f"cannot change while open task {user} runs this package"})
    _apply(package, spec)
    save_unique(session, package, "package")
    return package


def remove_package(session: Session, package_id: int) -> None:
    """Refused while an open task is to run it; finished tasks keep their own copy of the request."""
    package = get_package(session, package_id)
    user = _open_task_using(session, package_id)
    if user is not None:
        raise Conflict(f"package {package_id} is used by open task {user}")
    session.delete(package)


def _open_task_using(session: Session, package_id: int) -> int | None:
    for task_id, post_install in active_post_install(session):
        runs = post_install.get("runPackages") or []
        if any(isinstance(run, dict) and run.get("packageId") == package_id for run in runs):
            return task_id
    return None
