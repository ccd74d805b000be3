"""API Gateway's own answers, plain and as the template's GatewayResponses customise them."""

import json

import pytest
from jsonschema import Draft202012Validator
from support.openapi import spec

from emulator import gateway_responses
from emulator.template import load_template

pytestmark = pytest.mark.unit

CUSTOM = gateway_responses.parse(
    {
        "MISSING_AUTHENTICATION_TOKEN": {
            "StatusCode": "404",
            "ResponseParameters": {
                "Headers": {"Content-Type": "'application/problem+json'", "X-From": "method.x"}
            },
            "ResponseTemplates": {
                "application/json": '{"m": $context.error.messageString, '
                '"raw": "$context.error.message", "t": "$context.error.responseType", '
                '"id": "$context.requestId"}'
            },
        },
        "DEFAULT_5XX": {"ResponseTemplates": {"application/json": '{"five": true}'}},
    }
)


def test_without_customisation_the_answers_are_api_gateways_own():
    answer = gateway_responses.answer({}, "INVALID_API_KEY", "r-1")

    assert answer.status == 403
    assert answer.headers == {"Content-Type": "application/json"}
    assert json.loads(answer.body) == {"message": "Forbidden"}


def test_a_customised_type_has_its_status_literal_headers_and_rendered_template():
    answer = gateway_responses.answer(CUSTOM, "MISSING_AUTHENTICATION_TOKEN", "r-2")

    assert answer.status == 404
    # A header mapped from the request ('method.x') cannot be rendered here and is left out.
    assert answer.headers == {"Content-Type": "application/problem+json"}
    assert json.loads(answer.body) == {
        "m": "Missing Authentication Token",
        "raw": "Missing Authentication Token",
        "t": "MISSING_AUTHENTICATION_TOKEN",
        "id": "r-2",
    }


def test_an_uncustomised_type_falls_back_to_its_default_family():
    five = gateway_responses.answer(CUSTOM, "INTEGRATION_TIMEOUT", "r-3")
    four = gateway_responses.answer(CUSTOM, "THROTTLED", "r-4")

    assert (five.status, json.loads(five.body)) == (504, {"five": True})
    assert (four.status, json.loads(four.body)) == (429, {"message": "Too Many Requests"})


@pytest.mark.parametrize("response_type", sorted(gateway_responses.BUILT_IN))
def test_the_payments_api_answers_each_refusal_as_problem_json(response_type):
    responses = load_template().gateway_responses["PaymentsApi"]

    answer = gateway_responses.answer(responses, response_type, "r-5")

    body = json.loads(answer.body)
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert body["status"] == answer.status and body["request_id"] == "r-5"
    schema = {"$ref": "#/components/schemas/Problem", "components": spec()["components"]}
    Draft202012Validator(schema).validate(body)
