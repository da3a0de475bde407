"""Hand-written (not generated): the base class of every generated model.

``datamodel-codegen`` puts it under each model (``base-class`` in pyproject.toml), so the wire
settings and the dict/JSON helpers are typed methods of the models themselves. Wire settings:
fields that are None are left out of the JSON (``omit_defaults``) and models are built with keyword
arguments only.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

_M = TypeVar("_M", bound="WireModel")
_ENCODER = msgspec.json.Encoder()


class WireModel(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of the generated models: snake_case attributes, camelCase wire names from the spec."""

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a dict: camelCase keys, None fields left out."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result

    def to_json(self) -> str:
        """The wire JSON as text."""
        return _ENCODER.encode(self).decode()

    @classmethod
    def from_dict(cls: type[_M], data: dict[str, Any]) -> _M:
        """Build the model from its wire dict (camelCase keys), validating types."""
        return msgspec.convert(data, cls)

    @classmethod
    def from_json(cls: type[_M], data: bytes | str) -> _M:
        """Build the model from its wire JSON, validating types."""
        return msgspec.json.decode(data, type=cls)
