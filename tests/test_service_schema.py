"""The API against its own OpenAPI schema: schemathesis generates requests for every operation,
valid and invalid, and every answer must be a documented status with a body that fits the
schema, never a 5xx."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.routers import CentroidRouter
from hubroute.service.app import create_app
from hubroute.service.config import ServiceConfig

pytestmark = pytest.mark.slow
EXCLUDED = [schemathesis.checks.ignored_auth, schemathesis.checks.positive_data_acceptance]
CONFIG = SchemathesisConfig.from_path(Path(__file__).parents[1] / "schemathesis.toml")


@pytest.fixture(scope="module")
def app(tmp_path_factory, encoder):
    stream = synth_stream(SynthConfig(models=40, experiences=1, seed=2))
    router = CentroidRouter(encoder).fit(stream[0]).save(tmp_path_factory.mktemp("r") / "r")
    cfg = ServiceConfig(inference="fp32", access_log=False, max_prompts=16, max_cards=8, max_feedback_items=8)
    application = create_app(Path(tmp_path_factory.mktemp("state")), router, cfg)
    yield application
    application.state.service.stop()


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_every_operation_answers_as_documented(app, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    statuses: Counter[int] = Counter()
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 12
    for op in operations:

        @settings(
            max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call_and_validate(excluded_checks=EXCLUDED)
            statuses[response.status_code] += 1

        try:
            run()
        except Unsatisfiable:  # an operation without inputs has no invalid form
            assert mode is schemathesis.GenerationMode.NEGATIVE
    assert statuses and not [s for s in statuses if s >= 500], statuses
