"""One running system for the end-to-end tests: every service a real process over the real broker,
with a tiny base model so training fits in CI. Tests use their own twins on it."""
from __future__ import annotations

import pytest

from devstack.demo_sources import demo_blog
from devstack.stack import Stack
from llmtwin.infra.process import LocalServer, free_port
from llmtwin.settings import Settings
from llmtwin.testing.stack import stack_settings

# The page behind sign-in, as deployed: the browser test signs in, API clients send it as a bearer token.
E2E_ADMIN_TOKEN = "e2e-admin-token"


@pytest.fixture(scope="session")
def e2e_settings(tmp_path_factory, tiny_base_model) -> Settings:
    return stack_settings(tmp_path_factory.mktemp("e2e") / "data", tiny_base_model, web_admin_token=E2E_ADMIN_TOKEN)


@pytest.fixture(scope="session")
def running_stack(e2e_settings) -> Stack:
    with Stack(e2e_settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def blog_site(e2e_settings) -> LocalServer:
    """The demo blog on loopback: a person's own site, as the crawler would find it on the web."""
    with demo_blog(e2e_settings, free_port()) as server:
        yield server
