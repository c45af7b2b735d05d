"""JSON Merge Patch (RFC 7396), both ways: the API applies patches, the web UI makes them from its forms."""

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` applied to `target`: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_patch_between(old: Any, new: Any) -> Any:
    """The merge patch that turns `old` into `new` (`None` is "remove")."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch_between(old[key], value)
    return patch
