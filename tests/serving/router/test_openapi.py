"""The router's OpenAPI document, checked against a live router with schemathesis.

schemathesis generates requests for every operation in the document the router serves at
``/v2/openapi.json`` (schema-valid ones and, for the infer body, broken ones too), sends them
to a live router on loopback, and checks each answer: no 5xx, a status the document lists for
that operation, the documented content type and headers, and a body that matches the
documented schema. A few hundred requests, in well under a minute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from kairos.client.launch import RouterProcess, running_router
from kairos.protocol.api import OPENAPI_PATH as PATH
from kairos.serving.router.openapi import openapi_document

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_router() -> Iterator[RouterProcess]:
    args = ["--model", "dien", "--pool", "g4dn.xlarge=1,r5n.large=1", "--time-scale", "0"]
    with running_router(args) as router:
        yield router


# Per operation, at most; scripts/fuzz_router.py sends thousands more when asked.
EXAMPLES = {"positive": 30, "negative": 25}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_router_answers_as_its_openapi_document_says(live_router, mode) -> None:
    # Driven through hypothesis directly: schemathesis's pytest fixture integration does not
    # run under pytest 9.2 (it reads a private node attribute that is gone).
    schema = schemathesis.openapi.from_url(live_router.url + PATH)
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results  # the document loads cleanly
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) >= 10  # schemathesis leaves out the document's own path
    if mode is GenerationMode.NEGATIVE:  # only operations with inputs can be given bad ones
        operations = [op for op in operations if "{model}" in op.path]
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode.value],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            statuses.append(case.call_and_validate(checks=CHECKS).status_code)

        check()
    assert len(statuses) >= 100  # the run really sent a few hundred requests
    assert not [s for s in statuses if s >= 500]
    print(mode.value, len(statuses), sorted(Counter(statuses).items()))


def test_the_document_names_the_served_model_and_the_binary_header(live_router) -> None:
    status, text = live_router.get(PATH)
    assert status == 200
    doc = schemathesis.openapi.from_url(live_router.url + PATH).raw_schema
    infer = doc["paths"]["/v2/models/{model}/infer"]
    assert infer["parameters"][0]["schema"]["enum"] == ["dien"]
    headers = [p["name"] for p in infer["post"]["parameters"]]
    assert headers == ["Inference-Header-Content-Length"] or headers == [
        "inference-header-content-length"
    ]
    example = infer["post"]["requestBody"]["content"]["application/json"]["example"]
    assert [i["name"] for i in example["inputs"]] == ["dense", "sparse"]
    assert openapi_document()["paths"].keys() == doc["paths"].keys()
