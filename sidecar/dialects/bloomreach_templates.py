"""The `bloomreach` dialect's `public` and `private` templates: SPEC §4's table.

A template fills a stream's three main permission sets; whatever the stream
lists itself overrides the template name by name, and its own `default`
overrides the template's.
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.dialects.base import Template

_BROWSING = [
    "page_visit",
    "view_item",
    "view_category",
    "cart_update",
    "checkout",
    "search",
    "session_start",
    "session_end",
]

# SPEC §4, the table in Bloomreach's own names.
TEMPLATES: Mapping[str, Template] = {
    "public": {
        "customer_ids": {"default": "deny", "allow": ["cookie"], "signed_only": ["registered"]},
        "event_types": {
            "default": "deny",
            "allow": _BROWSING,
            "signed_only": ["purchase", "consent"],
        },
        "customer_properties": {
            "default": "deny",
            "allow": ["language", "first_name"],
            "signed_only": ["email", "phone"],
        },
    },
    "private": {
        "customer_ids": {
            "default": "deny",
            "allow": ["cookie", "registered", "email_id", "phone_id"],
        },
        "event_types": {
            "default": "deny",
            "allow": [*_BROWSING, "purchase", "purchase_item", "consent", "campaign"],
        },
        "customer_properties": {
            "default": "deny",
            "allow": ["email", "phone", "first_name", "last_name", "language", "consent_status"],
        },
    },
}
