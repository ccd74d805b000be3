"""CloudFormation intrinsic functions, resolved as far as makes sense on one machine.

Parameters, pseudo parameters, Conditions, !Sub, !If, !Join, !Select and the condition functions
resolve to plain values. What only a deployed stack knows (an Api's id, !GetAtt, !ImportValue)
resolves to a readable placeholder instead of failing, so a template written for AWS still loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NO_VALUE = object()  # AWS::NoValue: the key or list item disappears.

ACCOUNT_ID = "123456789012"
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class TemplateError(ValueError):
    """The template cannot be understood (a missing parameter, an unknown condition...)."""


class Resolver:
    def __init__(
        self,
        parameters: Mapping[str, Any],
        conditions: Mapping[str, Any],
        resources: Mapping[str, Any],
        region: str,
        stack_name: str = "consim-local",
    ) -> None:
        self.parameters = dict(parameters)
        self.resources = resources
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self._condition_specs = dict(conditions)
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self._condition_specs:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(self._condition_specs[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, argument),) = value.items()
                function = _FUNCTIONS.get(key)
                if function is not None:
                    return function(self, argument)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        return value

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            # A deployed resource's physical id; locally the logical id names it well enough.
            return name
        raise TemplateError(f"!Ref to unknown name {name!r}")

    def sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return _placeholder("GetAtt", name)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def _placeholder(function: str, argument: Any) -> str:
    return f"<{function} {argument}>"


def _if(resolver: Resolver, argument: list[Any]) -> Any:
    name, when_true, when_false = argument
    return resolver.resolve(when_true if resolver.condition(name) else when_false)


def _get_att(resolver: Resolver, argument: Any) -> str:
    target = argument if isinstance(argument, str) else ".".join(map(str, argument))
    return _placeholder("GetAtt", target)


def _join(resolver: Resolver, argument: list[Any]) -> str:
    delimiter, items = argument
    return str(delimiter).join(str(v) for v in resolver.resolve(items))


def _select(resolver: Resolver, argument: list[Any]) -> Any:
    index, items = argument
    return resolver.resolve(items)[int(resolver.resolve(index))]


def _split(resolver: Resolver, argument: list[Any]) -> list[str]:
    delimiter, text = argument
    return str(resolver.resolve(text)).split(delimiter)


_FUNCTIONS = {
    "Ref": lambda r, a: r.ref(a),
    "Fn::Sub": Resolver.sub,
    "Fn::If": _if,
    "Fn::Not": lambda r, a: not r.resolve(a[0]),
    "Fn::Equals": lambda r, a: str(r.resolve(a[0])) == str(r.resolve(a[1])),
    "Fn::And": lambda r, a: all(r.resolve(v) for v in a),
    "Fn::Or": lambda r, a: any(r.resolve(v) for v in a),
    "Condition": lambda r, a: r.condition(a),
    "Fn::GetAtt": _get_att,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::ImportValue": lambda r, a: _placeholder("ImportValue", r.resolve(a)),
    "Fn::GetAZs": lambda r, a: [f"{r.pseudo['AWS::Region']}a"],
    "Fn::Base64": lambda r, a: r.resolve(a),
}
