"""``/api/v1/profiles/{externalId}``: customer profiles (SPEC §10), the same functions as
``msgcenter profile``.

``PUT`` replaces the profile's data (a field left out is cleared; ``attributes`` and
``pushTokens`` are replaced whole) and answers 201 when it created the profile, 200 when
it replaced one; ``subscriptions`` (``{"email": false}``) changes the opt-ins it names
and leaves the others -- an opt-out is the customer's, and an integration that does not
mention it must not undo it.  ``GET`` shows it; ``DELETE`` erases it (the right to
erasure: the profile goes and its events' personal data is blanked, counts kept).
Scopes: ``push`` to write (integrations feed profiles as they feed events), ``read`` to
read, ``admin`` to erase.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response

from soap_service import profiles
from soap_service.errors import ValidationFailed
from soap_service.http.api import context, json_body, json_response, require
from soap_service.http.events_api import iso
from soap_service.models import Channel, Profile

blueprint = Blueprint("profiles", __name__)
PREFIX = "/api/v1/profiles"
# PUT replaces these (a field left out is cleared)
DATA_FIELDS = ("email", "mobilePhone", "pushTokens", "language", "country", "firstName",
               "lastName", "attributes")


def profile_json(p: Profile) -> dict[str, Any]:
    return {
        "externalId": p.external_id, "email": p.email, "mobilePhone": p.mobile_phone,
        "pushTokens": list(p.push_tokens), "language": p.language, "country": p.country,
        "firstName": p.first_name, "lastName": p.last_name, "attributes": p.attributes,
        "subscriptions": {ch.value: ch not in p.unsubscribed for ch in Channel},
        "unsubscribedAt": {ch.value: iso(at) for ch, at in p.unsubscribed.items()},
        "createdAt": iso(p.created_at), "updatedAt": iso(p.updated_at),
    }


def _subscriptions(value: Any) -> dict[Channel, bool]:
    if value is None:
        return {}
    channels = {c.value: c for c in Channel}
    if not isinstance(value, dict) or not all(
            k in channels and isinstance(v, bool) for k, v in value.items()):
        raise ValidationFailed("field 'subscriptions' must be an object of channel -> "
                               "boolean (email, sms, push)")
    return {channels[k]: v for k, v in value.items()}


@blueprint.put(f"{PREFIX}/<path:external_id>")
def put_profile(external_id: str) -> Response:
    require("push")
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object (the profile's fields)")
    if "externalId" in data and data.pop("externalId") != external_id:
        raise ValidationFailed("field 'externalId' differs from the path's")
    subscriptions = _subscriptions(data.pop("subscriptions", None))
    ctx = context()
    fields = {name: data.get(name) for name in DATA_FIELDS}
    unknown = sorted(set(data) - set(DATA_FIELDS))
    if unknown:
        raise ValidationFailed(f"unknown profile field(s): {', '.join(unknown)}")
    profile, created = profiles.put(ctx.db, external_id, fields,
                                    ctx.settings.default_country_code)
    for channel, subscribed in subscriptions.items():
        profile = profiles.set_subscription(ctx.db, profile.external_id, channel, subscribed)
    location = f"{PREFIX}/{quote(profile.external_id, safe='')}"
    return json_response(profile_json(profile), 201 if created else 200,
                         [("Location", location)] if created else None)


@blueprint.get(f"{PREFIX}/<path:external_id>")
def get_profile(external_id: str) -> Response:
    require("read")
    return json_response(profile_json(profiles.require(context().db, external_id)))


@blueprint.delete(f"{PREFIX}/<path:external_id>")
def erase_profile(external_id: str) -> Response:
    require("admin")
    profiles.erase(context().db, external_id)
    return Response(status=204)
