"""Genesys' own Python SDK (PureCloudPlatformClientV2) against a running gdprd.

Privacy tooling written for Genesys Cloud must work by changing the base URL: every answer has
to deserialize into the SDK's models, with no enum falling back to "outdated_sdk_version", dates
that parse, and errors that come back as the SDK's ApiException carrying a Genesys ErrorBody.

contract/run.sh starts the server and sets GDPRD_BASE_URL, GDPRD_CLIENT_ID and
GDPRD_CLIENT_SECRET (a client of the seeded "demo" organization holding every permission).
"""

import datetime
import io
import json
import os
import time
import urllib.request
import zipfile

import pytest
import PureCloudPlatformClientV2 as genesys
from PureCloudPlatformClientV2.rest import ApiException

BASE_URL = os.environ["GDPRD_BASE_URL"]
CLIENT_ID = os.environ["GDPRD_CLIENT_ID"]
CLIENT_SECRET = os.environ["GDPRD_CLIENT_SECRET"]

# The story people every seeded organization starts with (src/seed/story.rs).
ANA_NAME = "Ana García"
ANA_EMAIL = "ana.garcia@example.com"
ANA_PHONE = "(555) 010-0001"
OTHER_ANA_EMAIL = "ana.garcia@example.org"
JONAS_EMAIL = "jonas.mueller@corp.example"

OUTDATED = "outdated_sdk_version"


def sdk_client(access_token=None):
    """An SDK client whose API and login hosts are both our server.

    The SDK derives its login host from the API host by turning "//api." into "//login."; a
    host without "//api." (such as http://127.0.0.1:PORT) is used as is for both.
    """
    client = genesys.api_client.ApiClient(host=BASE_URL)
    if access_token is not None:
        client.access_token = access_token
    return client


@pytest.fixture(scope="module")
def gdpr():
    client = sdk_client().get_client_credentials_token(CLIENT_ID, CLIENT_SECRET)
    assert client.access_token
    return genesys.GeneralDataProtectionRegulationApi(client)


def no_outdated_enum(model):
    """Fails when any value of an SDK model (nested ones too) fell back to "outdated_sdk_version"."""
    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        else:
            assert value != OUTDATED, f"{path} is not a value this SDK knows"

    walk(model.to_dict(), type(model).__name__)


def error_body(error: ApiException):
    """The Genesys ErrorBody of an ApiException, checked against its headers."""
    headers = {k.lower(): v for k, v in error.headers.items()}
    assert headers["content-type"] == "application/json"
    body = json.loads(error.body)
    assert body["status"] == error.status
    assert body["contextId"] == headers["inin-correlation-id"]
    assert body["message"]
    assert isinstance(body["messageParams"], dict)
    assert isinstance(body["details"], list) and isinstance(body["errors"], list)

    class Response:  # what ApiClient.deserialize reads
        data = error.body

        @staticmethod
        def getheader(name, default=None):
            return headers.get(name.lower(), default)

    model = genesys.api_client.ApiClient().deserialize(Response, "ErrorBody")
    assert isinstance(model, genesys.ErrorBody)
    assert model.code == body["code"] and model.status == error.status
    return model


def submit(gdpr, request_type, subject, replacement_terms=None, delete_confirmed=None):
    body = genesys.GDPRRequest()
    body.request_type = request_type
    body.subject = subject
    if replacement_terms is not None:
        body.replacement_terms = replacement_terms
    if delete_confirmed is None:
        return gdpr.post_gdpr_requests(body)
    return gdpr.post_gdpr_requests(body, delete_confirmed=delete_confirmed)


def completed(gdpr, request, timeout=90):
    """Polls a request until it is COMPLETED (and fails on ERROR or after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        current = gdpr.get_gdpr_request(request.id)
        assert isinstance(current, genesys.GDPRRequest)
        no_outdated_enum(current)
        assert current.status != "ERROR", current
        if current.status == "COMPLETED":
            return current
        assert time.monotonic() < deadline, f"request {request.id} is still {current.status}"
        time.sleep(0.25)


def check_request(request, request_type):
    assert isinstance(request, genesys.GDPRRequest)
    no_outdated_enum(request)
    assert request.request_type == request_type
    assert request.status in {"INITIATED", "SEARCHING", "UPDATING", "DELETING",
                              "FINALIZING", "COMPLETED"}
    assert isinstance(request.created_date, datetime.datetime)
    assert request.created_date.tzinfo is not None
    assert request.self_uri == f"/api/v2/gdpr/requests/{request.id}"
    assert request.created_by.id and request.created_by.self_uri


def subject(**fields):
    value = genesys.GDPRSubject()
    for name, field in fields.items():
        setattr(value, name, field)
    return value


def test_subject_search_deserializes_into_sdk_models(gdpr):
    listing = gdpr.get_gdpr_subjects("EMAIL", ANA_EMAIL)
    assert isinstance(listing, genesys.GDPRSubjectEntityListing)
    no_outdated_enum(listing)
    assert listing.total == len(listing.entities) >= 2
    assert listing.page_number == 1 and listing.page_count == 1
    assert listing.self_uri.startswith("/api/v2/gdpr/subjects?")
    assert all(isinstance(e, genesys.GDPRSubject) for e in listing.entities)
    assert any(e.name == ANA_NAME and e.external_contact_id for e in listing.entities)

    by_phone = gdpr.get_gdpr_subjects("PHONE", ANA_PHONE)
    no_outdated_enum(by_phone)
    assert {e.external_contact_id for e in by_phone.entities} >= {
        e.external_contact_id for e in listing.entities if e.external_contact_id
    } - {None}


def test_export_completes_with_a_downloadable_archive(gdpr):
    accepted = submit(gdpr, "GDPR_EXPORT", subject(email_addresses=[JONAS_EMAIL]))
    check_request(accepted, "GDPR_EXPORT")
    assert accepted.status == "INITIATED"

    done = completed(gdpr, accepted)
    check_request(done, "GDPR_EXPORT")
    assert done.results_url and done.results_urls and done.results_url == done.results_urls[0]
    with urllib.request.urlopen(done.results_url, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    assert archive.namelist(), "the export archive is empty"


def test_update_rewrites_the_value(gdpr):
    term = genesys.ReplacementTerm()
    term.type = "EMAIL"
    term.existing_value = OTHER_ANA_EMAIL
    term.updated_value = "ana.garcia.new@example.org"
    accepted = submit(gdpr, "GDPR_UPDATE", subject(email_addresses=[OTHER_ANA_EMAIL]), [term])
    check_request(accepted, "GDPR_UPDATE")
    assert accepted.replacement_terms[0].type == "EMAIL"

    completed(gdpr, accepted)
    assert gdpr.get_gdpr_subjects("EMAIL", "ana.garcia.new@example.org").total == 1
    assert gdpr.get_gdpr_subjects("EMAIL", OTHER_ANA_EMAIL).total == 0


def test_delete_needs_confirmation_and_then_erases(gdpr):
    found = gdpr.get_gdpr_subjects("EMAIL", ANA_EMAIL).entities
    contact_id = next(e.external_contact_id for e in found if e.external_contact_id)

    with pytest.raises(ApiException) as refused:
        submit(gdpr, "GDPR_DELETE", subject(external_contact_id=contact_id))
    assert refused.value.status == 400
    assert error_body(refused.value).code in {"bad.request", "invalid.value"}

    accepted = submit(gdpr, "GDPR_DELETE", subject(external_contact_id=contact_id),
                      delete_confirmed=True)
    check_request(accepted, "GDPR_DELETE")
    completed(gdpr, accepted)
    remaining = gdpr.get_gdpr_subjects("EMAIL", ANA_EMAIL).entities
    assert not any(e.external_contact_id == contact_id for e in remaining)


def test_request_listing_deserializes_into_sdk_models(gdpr):
    listing = gdpr.get_gdpr_requests(page_size=2, page_number=1)
    assert isinstance(listing, genesys.GDPRRequestEntityListing)
    no_outdated_enum(listing)
    assert listing.page_size == 2 and listing.page_number == 1
    assert listing.total >= 3 and len(listing.entities) == 2
    assert listing.next_uri == "/api/v2/gdpr/requests?pageSize=2&pageNumber=2"
    newest_first = [r.created_date for r in listing.entities]
    assert newest_first == sorted(newest_first, reverse=True)

    everything = gdpr.get_gdpr_requests(page_size=100)
    types = {r.request_type for r in everything.entities}
    assert {"GDPR_EXPORT", "GDPR_UPDATE", "GDPR_DELETE"} <= types


def test_errors_are_api_exceptions_with_an_error_body(gdpr):
    with pytest.raises(ApiException) as missing:
        gdpr.get_gdpr_request("5d1a7c2e-0000-4000-8000-000000000000")
    assert missing.value.status == 404
    assert error_body(missing.value).code == "not.found"

    with pytest.raises(ApiException) as invalid:
        gdpr.get_gdpr_subjects("SHOE_SIZE", "42")
    assert invalid.value.status == 400
    assert error_body(invalid.value).code == "invalid.value"

    stranger = genesys.GeneralDataProtectionRegulationApi(sdk_client("not-a-token"))
    with pytest.raises(ApiException) as unauthorized:
        stranger.get_gdpr_requests()
    assert unauthorized.value.status == 401
    assert error_body(unauthorized.value).code == "bad.credentials"

    with pytest.raises(ApiException) as bad_secret:
        sdk_client().get_client_credentials_token(CLIENT_ID, "wrong secret")
    assert bad_secret.value.status == 401
    assert error_body(bad_secret.value).code == "bad.credentials"
